"""Documented limits, shared by the contract and the service: the one place they are set.

Names and counts follow Cloudflare Workflows. Sizes are Flowledger's own: everything it
produces on Kafka must fit the topic it goes to, or the batch that produced it could never be
sent and would be redelivered forever. README "Limits" lists these values.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

NAME_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9_-]*$"
# Step names may hold anything printable: no C0/C1 control characters.
STEP_NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

MAX_BATCH = 100
MAX_TAGS = 30
MAX_SCHEDULES = 10  # cron expressions per workflow
# Steps in one run of an instance (sleeps and waits count): Cloudflare's default, and the most
# its setting allows (FLOWLEDGER_MAX_STEPS_PER_INSTANCE sets it between 1 and the ceiling).
DEFAULT_MAX_STEPS_PER_INSTANCE = 10_000
MAX_STEPS_PER_INSTANCE_CEILING = 25_000
# A step's `retries.limit`: Cloudflare documents no bound; each retry is an attempt, an event
# and a back-off timer, so a limit of millions would keep one instance retrying for years.
MAX_RETRIES = 10_000

KIB = 1024

# --- sizes on Kafka --------------------------------------------------------------------------
# What producers may put on `{prefix}.commands` (the topic's max.message.bytes).
COMMANDS_TOPIC_MAX_MESSAGE_BYTES = 1024 * KIB
# The largest command accepted, key and value, both as received and re-encoded (a number such
# as 1e15 re-encodes longer). Every event holds the data of one command (or one earlier
# command's payload) plus an envelope of well under 64 KiB, so it fits MAX_MESSAGE_BYTES.
MAX_COMMAND_BYTES = 900 * KIB
# params, an event's payload and a step's output, each as re-encoded JSON (Cloudflare allows
# 1 MiB; here the rest of the command has to fit beside it within MAX_COMMAND_BYTES).
MAX_JSON_BYTES = 896 * KIB
# Nesting of [ and { in a command record: deeper JSON would exhaust the decoder's recursion.
MAX_COMMAND_DEPTH = 64
# max.message.bytes of replies, events and dead letters, and the service producer's
# max_request_size: a dead letter is a whole command record plus its headers, a reply is
# keyed by the command's key, so both need room beyond COMMANDS_TOPIC_MAX_MESSAGE_BYTES.
MAX_MESSAGE_BYTES = COMMANDS_TOPIC_MAX_MESSAGE_BYTES + 64 * KIB
# Input echoed in a reply's error message or a dead letter's reason is cut to this many
# characters; the whole message or reason, to MAX_REASON_CHARS.
MAX_ECHO_CHARS = 1000
MAX_REASON_CHARS = 2 * MAX_ECHO_CHARS
# An HTTP request body, refused (413) beyond this before it is read: room for the largest
# command's JSON plus the request's own whitespace and fields, which the command drops.
MAX_HTTP_BODY_BYTES = COMMANDS_TOPIC_MAX_MESSAGE_BYTES + 64 * KIB

AccountId = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]
WorkflowName = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
EventType = Annotated[str, Meta(min_length=1, max_length=100, pattern=NAME_PATTERN)]
StepName = Annotated[str, Meta(min_length=1, max_length=256, pattern=STEP_NAME_PATTERN)]
CommandId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        description="A UUID chosen by the producer; the idempotency key of the command.",
    ),
]
Tag = Annotated[str, Meta(min_length=1, max_length=128)]
# Five fields, UTC (minute hour day-of-month month day-of-week); checked by the commands role,
# which names what is accepted (a length bound here would answer "@reboot" with "Expected
# `str` of length >= 9", which says nothing of the format).
CronExpression = Annotated[
    str,
    Meta(
        max_length=100,
        description="A 5-field cron expression in UTC: minute hour day-of-month month "
        "day-of-week, with a tick within 5 years; no macros (@daily), no seconds field.",
    ),
]


def bounded(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was cut, so that whatever a client
    sends, the message that echoes it stays small."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"
