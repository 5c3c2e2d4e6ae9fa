"""What the api's routes take from a request, declared once: the path parameters (validated
like the contract's names), the caller behind the token, and the view of each read model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Request

from contracts.limits import NAME_PATTERN
from projections import agent_run, cloudflare_instance, onfido_run, staged_instance, workflows
from services.api.auth import Principal, authenticate
from services.store.document_view import DocumentView

# --- path parameters ---------------------------------------------------------------------------

AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
WorkflowName = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]
EventType = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]

# --- the caller --------------------------------------------------------------------------------

Caller = Annotated[Principal, Depends(authenticate)]
"""The token's principal; a request without a valid token answers 401 before the route runs."""

# --- views -------------------------------------------------------------------------------------


def view(request: Request, name: str) -> DocumentView:
    """The view of the read model `name` (projections.read_models) in this process.

    The Cloudflare creates and the workflow PUT read their view only once their command is
    answered, and call this then rather than taking the view as a dependency: a process that
    takes no writes (no gateway) answers them 503 before it looks for a view.
    """
    views: dict[str, DocumentView] = request.app.state.views
    return views[name]


def _view_of(name: str) -> Callable[[Request], DocumentView]:
    def dependency(request: Request) -> DocumentView:
        return view(request, name)

    return dependency


CloudflareView = Annotated[DocumentView, Depends(_view_of(cloudflare_instance.VIEW_NAME))]
OnfidoRunsView = Annotated[DocumentView, Depends(_view_of(onfido_run.VIEW_NAME))]
AgentRunsView = Annotated[DocumentView, Depends(_view_of(agent_run.VIEW_NAME))]
StagedView = Annotated[DocumentView, Depends(_view_of(staged_instance.VIEW_NAME))]
WorkflowsView = Annotated[DocumentView, Depends(_view_of(workflows.VIEW_NAME))]
