"""Topic names, all derived from one prefix (FLOWLEDGER_TOPIC_PREFIX)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str = "flowledger"

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def replies(self) -> str:
        return f"{self.prefix}.replies"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.commands.dlq"

    def all(self) -> tuple[str, str, str, str]:
        return (self.commands, self.replies, self.events, self.dead_letters)


# Headers on a dead-letter record, beside the original bytes as its value.
DLQ_REASON = "x-flowledger-reason"
DLQ_SOURCE_TOPIC = "x-flowledger-source-topic"
DLQ_SOURCE_PARTITION = "x-flowledger-source-partition"
DLQ_SOURCE_OFFSET = "x-flowledger-source-offset"
