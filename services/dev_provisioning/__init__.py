"""Developer provisioning for ``make run``, ``make test``, ``make bench`` and ``flowledger kafka``.

A local Kafka broker (Maven Central jars, a KRaft node on the machine's JDK, or Docker), a local
PostgreSQL server, and the Docker engine probe both use. Production points
``FLOWLEDGER_KAFKA_BOOTSTRAP`` and ``FLOWLEDGER_STORE`` at its own services and never runs this.
The runtime adapters every deployment uses are in ``services/infra/``.
"""
