"""Named domain errors. Each carries the stable `code` a rejected reply reports."""

from __future__ import annotations


class DomainError(Exception):
    code = "domain.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTransition(DomainError):
    code = "instance.invalid_transition"


class InstanceAlreadyExists(DomainError):
    code = "instance.already_exists"


class InstanceNotFound(DomainError):
    code = "instance.not_found"


class InstanceStillRunning(DomainError):
    """Only a finished instance may be deleted: terminate it first."""

    code = "instance.running"


class WorkflowNotFound(DomainError):
    code = "workflow.not_found"


class CannotTerminate(DomainError):
    code = "instance.cannot_terminate"


class RestartStepNotFound(DomainError):
    code = "instance.restart_step_not_found"


class InstanceFinished(DomainError):
    code = "instance.finished"


class StepLimitReached(DomainError):
    """The run already has as many steps as an instance may have."""

    code = "instance.step_limit"


class StepMismatch(DomainError):
    code = "step.mismatch"


class AttemptTimedOut(DomainError):
    """An engine ended an attempt that the scheduler had already timed out."""

    code = "step.attempt_timed_out"


class LimitExceeded(DomainError):
    code = "limit.exceeded"
