"""Turning a command's reply into an HTTP answer, for every dialect's write routes."""

from __future__ import annotations

from fastapi import HTTPException, Request

from contracts.commands import AnyCommand
from contracts.replies import Reply
from services.api.gateway import BrokerUnavailable, CommandGateway, CommandTooLarge

# A rejected reply's stable code -> the HTTP status that says the same thing.
STATUS_BY_CODE = {
    "instance.already_exists": 409,
    "instance.id_reserved": 400,
    "instance.not_found": 404,
    "workflow.not_found": 404,
    "instance.invalid_transition": 409,
    "instance.cannot_terminate": 409,
    "instance.restart_step_not_found": 422,
    "instance.finished": 409,
    "instance.running": 409,
    "step.mismatch": 409,
    "step.attempt_timed_out": 409,
    "limit.exceeded": 400,
    "payload.too_large": 413,
    "command.invalid": 400,
    "command.too_large": 413,
    "command.too_deep": 400,
    "command.not_json": 400,
    "command.unknown_type": 400,
    "command.undecodable": 400,
    "command.id_reused": 409,
    "command.failed": 500,
    "instance.key_unavailable": 503,  # a key-encryption key is missing from the settings
}


class StillPending(Exception):
    """The command was published but its answer did not arrive in time: answer 202."""

    def __init__(self, command_id: str) -> None:
        super().__init__(command_id)
        self.command_id = command_id


class Rejected(HTTPException):
    def __init__(self, reply: Reply) -> None:
        code = reply.error.code if reply.error else "command.rejected"
        message = reply.error.message if reply.error else "the command was rejected"
        super().__init__(status_code=STATUS_BY_CODE.get(code, 400), detail=message)
        self.code = code


async def submit(request: Request, command: AnyCommand) -> Reply:
    """The accepted (or duplicate) reply to `command`; raises Rejected or StillPending."""
    gateway: CommandGateway | None = request.app.state.gateway
    if gateway is None:
        raise HTTPException(status_code=503, detail="this process does not accept writes")
    try:
        reply = await gateway.submit(command)
    except BrokerUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
    except CommandTooLarge as error:
        raise HTTPException(status_code=413, detail=str(error)) from error
    if reply is None:
        raise StillPending(command.command_id)
    if reply.outcome == "rejected":
        raise Rejected(reply)
    return reply
