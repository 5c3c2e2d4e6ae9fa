"""The import rule (docs/architecture.md, "Layers"): dependencies point inward.

contracts ← domain ← application ← store, projections ← roles, api ← bootstrap, server, cli.
Checked over every module's `import` statements (also those inside functions), so a new
module that reaches outward fails here rather than in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = (
    "services.bootstrap",
    "services.server",
    "services.cli",
    "services.supervisor",
    "services.schema_export",
)

# Package → packages it must never import (its outer layers).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "contracts": ("services", "projections", "flowledger"),
    "services.domain": (
        "services.application",
        "services.store",
        "services.roles",
        "services.api",
        "services.infra",
        "services.dev_provisioning",
        "projections",
        *ENTRY_POINTS,
    ),
    "services.application": (
        "services.store",
        "services.roles",
        "services.api",
        "services.infra",
        "services.dev_provisioning",
        "projections",
        *ENTRY_POINTS,
    ),
    "projections": (
        "services.application",
        "services.store",
        "services.roles",
        "services.api",
        "services.infra",
        "services.dev_provisioning",
        *ENTRY_POINTS,
    ),
    "services.store": ("services.roles", "services.api", *ENTRY_POINTS),
    "services.infra": (
        "services.roles",
        "services.api",
        "services.dev_provisioning",
        *ENTRY_POINTS,
    ),
    # Logs and metrics: read by every role and the api, never reaching back into them.
    "services.observability": (
        "services.roles",
        "services.api",
        "services.console",
        "services.worker",
        "services.dev_provisioning",
        *ENTRY_POINTS,
    ),
    "services.roles": ("services.api", "services.dev_provisioning", *ENTRY_POINTS),
    "services.api": ("services.dev_provisioning", *ENTRY_POINTS),
    # The web console: part of the api layer (mounted by it), never importing a role.
    "services.console": ("services.roles", "services.dev_provisioning", *ENTRY_POINTS),
    # The worker's adapters: beside the roles, driving the public package's engine.
    "services.worker": ("services.api", "services.dev_provisioning", *ENTRY_POINTS),
    # The public SDK: the wire contract only, never the service.
    "flowledger": ("services", "projections"),
}
# The one sideways arrow allowed: the api role is a role, and says so through the protocol.
ALLOWED = {("services.api", "services.roles.role")}

# The event store library's recorder and mapper are known to one port alone.
STORE_INTERNALS = ("recorder", "mapper")
STORE_INTERNALS_ALLOWED = ("services/application/", "services/store/")


def _modules() -> Iterator[tuple[str, Path]]:
    for package in ("contracts", "projections", "services", "flowledger"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            yield ".".join(relative.parts).removesuffix(".__init__"), path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _violations(module: str, path: Path) -> list[str]:
    found = []
    for layer, outer in FORBIDDEN.items():
        if not _within(module, layer):
            continue
        for imported in set(_imports(path)):
            for forbidden in outer:
                allowed = any(_within(imported, ok) for lay, ok in ALLOWED if lay == layer)
                if _within(imported, forbidden) and not allowed:
                    found.append(f"{module} imports {imported} ({layer} must not use {forbidden})")
    return found


def test_no_module_imports_an_outer_layer() -> None:
    violations = [v for module, path in _modules() for v in _violations(module, path)]
    assert violations == []


def test_only_the_notification_log_port_and_the_store_touch_the_recorder_and_mapper() -> None:
    touching = []
    for _module, path in _modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(STORE_INTERNALS_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in STORE_INTERNALS:
                touching.append(f"{relative}:{node.lineno} .{node.attr}")
    assert touching == []


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("from services.api.app import create_api\n", True),
        ("import services.roles.relay\n", True),
        ("def f():\n    from services.bootstrap import ROLES\n", True),
        ("from services import api\n", True),
        ("from contracts.events import LifecycleEvent\n", False),
    ],
)
def test_the_rule_catches_imports_at_any_depth(
    tmp_path: Path, source: str, forbidden: bool
) -> None:
    module = tmp_path / "example.py"
    module.write_text(source)

    assert bool(_violations("services.domain.example", module)) is forbidden
