"""schemas/ is generated from contracts/ and the apps: any difference fails."""

from __future__ import annotations

from pathlib import Path

from services.schema_export import render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_checked_in_schemas_match_the_contracts() -> None:
    rendered = render()
    on_disk = {str(p.relative_to(SCHEMAS)): p.read_text() for p in SCHEMAS.rglob("*.json")}
    stale = sorted(set(on_disk) - set(rendered))
    missing = sorted(set(rendered) - set(on_disk))
    changed = sorted(n for n in rendered if n in on_disk and on_disk[n] != rendered[n])
    assert not (stale or missing or changed), (
        f"schemas/ drifted (run `make schemas`): stale={stale} missing={missing} changed={changed}"
    )


def test_every_command_has_a_schema_naming_its_type() -> None:
    rendered = render()
    assert '"CreateInstance"' in rendered["commands/CreateInstance.json"]
    assert '"ChangeStatus"' in rendered["commands/ChangeStatus.json"]
