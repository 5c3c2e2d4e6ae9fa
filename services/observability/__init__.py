"""Observability: log lines (configured in one place, `logs.configure_logging`), their repeat
limits, and the Prometheus metrics every process serves."""
