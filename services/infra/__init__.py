"""Runtime adapters every deployment runs: topic declaration, broker and coordinator probes,
back-off, the store URL. Developer provisioning is in ``services/dev_provisioning/``."""
