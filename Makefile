# Every target does its own set-up; run `make test` or `make run` on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install kafka-jars browser run test repeat lint schemas clean bench soak

install: $(STAMP)

# Reinstalls only when pyproject.toml changes: a second run downloads nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# Apache Kafka's broker jars from Maven Central, cached outside the repo (~/.cache/flowledger).
kafka-jars: install
	$(BIN)/python -c "from services.dev_provisioning.kafka import ensure_kafka_jars as e; print('kafka jars:', e())"

# Chromium and chromedriver for the console's browser tests: Debian's packages, installed when
# missing (needs root or passwordless sudo). Without them the browser tests skip, or fail under
# FLOWLEDGER_REQUIRE_BACKENDS=1, where this step fails too.
browser: install
	$(BIN)/python -m services.dev_provisioning.browser

# The service and, beside it, a worker running the example workflow (README "Workers"); one
# Ctrl-C stops both. `make run WORKER=` runs the service alone.
WORKER ?= examples.checkout:Checkout --workflow checkout --account dev
run: install kafka-jars
	$(BIN)/python -m services.dev_provisioning.run_local $(WORKER)

test: install kafka-jars browser
	$(BIN)/python -m pytest -q

# The end-to-end tests REPEAT times in a row (default 10); each failure with its test id.
REPEAT ?= 10
repeat: install kafka-jars
	$(BIN)/python -m tests.repeat $(REPEAT)

# End-to-end throughput and latency beside the Kafka and store baselines (bench/README.md).
# Starts its own broker and PostgreSQL; BENCH_SECONDS (default 10) sets each measured phase.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

bench: install kafka-jars $(BENCH_STAMP)
	$(BIN)/python -m bench.run

# The service's memory over SOAK_COMMANDS (default 300,000) commands in waves (bench/README.md,
# "Soak"); not part of `make test`. SOAK_TRACEMALLOC=1 reports the allocation sites that grow.
soak: install kafka-jars $(BENCH_STAMP)
	$(BIN)/python -m bench.soak

lint: install
	$(BIN)/ruff check services contracts projections tests flowledger examples
	$(BIN)/mypy services contracts projections flowledger

schemas: install
	$(BIN)/flowledger schemas

clean:
	rm -rf $(VENV) .flowledger *.egg-info
