FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY projections projections
COPY services services
RUN pip install --no-cache-dir .
ENV FLOWLEDGER_HTTP_HOST=0.0.0.0
EXPOSE 8787
CMD ["flowledger", "serve"]
