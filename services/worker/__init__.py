"""The worker's adapters: what `flowledger worker` runs the engine of `flowledger.replay` on.

The engine knows two ports: an instance's history and a way to send progress commands. Here
are the history read from the event store (`history.py`), the commands published on Kafka
with their replies awaited (`channel.py`), and the process that consumes `{prefix}.events`
in one consumer group per workflow and wakes each instance it owns (`runtime.py`).
"""
