"""Topic names, all derived from one prefix (FLOWLEDGER_TOPIC_PREFIX)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.limits import COMMANDS_TOPIC_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES


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

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic configs declared with the topics. The commands topic takes less than the
        others hold, so that a dead letter (a whole command record and its headers), a reply
        (keyed like the command) and any event fit where Flowledger sends them."""
        produced = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
        return {
            self.commands: {"max.message.bytes": str(COMMANDS_TOPIC_MAX_MESSAGE_BYTES)},
            self.replies: produced,
            self.events: produced,
            self.dead_letters: produced,
        }


# Headers on a dead-letter record, beside the original bytes as its value.
DLQ_REASON = "x-flowledger-reason"
DLQ_SOURCE_TOPIC = "x-flowledger-source-topic"
DLQ_SOURCE_PARTITION = "x-flowledger-source-partition"
DLQ_SOURCE_OFFSET = "x-flowledger-source-offset"
