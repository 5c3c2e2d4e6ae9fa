"""`flowledger worker MODULE:CLASS --workflow NAME [--account ID ...] [--concurrency N]`.

The command runs a `WorkflowEntrypoint` subclass against a Flowledger deployment; what it does
is in README "Workers". The engine is `flowledger.replay`; the process around it (the events
consumer, the commands and their replies, the history read from the store) is
`services/worker/`, since those are the deployment's infrastructure, not the SDK's.
"""

from __future__ import annotations

import importlib
import os
import sys

from flowledger.workflows import WorkflowEntrypoint


class EntrypointError(ValueError):
    """MODULE:CLASS does not name a WorkflowEntrypoint subclass: the module cannot be
    imported, has no such attribute, or what it names is not a WorkflowEntrypoint."""


def load_entrypoint(target: str) -> type[WorkflowEntrypoint]:
    """The class named `module.path:ClassName`, the module importable from the current
    directory (as uvicorn finds its app)."""
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise EntrypointError(f"{target!r} is not MODULE:CLASS (e.g. examples.checkout:Checkout)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise EntrypointError(f"cannot import {module_name!r}: {error}") from error
    if not hasattr(module, class_name):
        raise EntrypointError(f"module {module_name!r} has no attribute {class_name!r}")
    found = getattr(module, class_name)
    if not (isinstance(found, type) and issubclass(found, WorkflowEntrypoint)):
        raise EntrypointError(
            f"{module_name}.{class_name} is not a subclass of flowledger.workflows."
            "WorkflowEntrypoint"
        )
    return found
