# The Flowledger service image: every role runs from it (`flowledger serve --role X`, compose.yaml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# This project, installed as a package: its `flowledger` console script is the entry point.
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY projections projections
COPY services services
COPY flowledger flowledger
# Not root at run time; .flowledger (FLOWLEDGER_STATE_DIR) is the one place it may write.
RUN pip install . \
    && useradd --system --uid 10001 flowledger \
    && mkdir .flowledger && chown flowledger .flowledger
USER flowledger

# Reachable from other containers; roles without the api serve probes on FLOWLEDGER_OPS_PORT.
ENV FLOWLEDGER_HTTP_HOST=0.0.0.0
EXPOSE 8787 9464
# SIGTERM drains in-flight commands and commits their offsets before the process exits.
STOPSIGNAL SIGTERM
CMD ["flowledger", "serve"]
