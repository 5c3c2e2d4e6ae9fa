"""FLOWLEDGER_MAX_STEPS_PER_INSTANCE: 10,000 by default, settable up to 25,000, refused past
it when the settings are read at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.bootstrap import build_application
from services.settings import Settings


def test_the_default_is_cloudflares_ten_thousand() -> None:
    assert Settings().max_steps_per_instance == 10_000


def test_it_is_settable_up_to_twenty_five_thousand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLEDGER_MAX_STEPS_PER_INSTANCE", "25000")
    assert Settings().max_steps_per_instance == 25_000


@pytest.mark.parametrize("value", ["25001", "0", "many"])
def test_a_value_outside_the_range_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FLOWLEDGER_MAX_STEPS_PER_INSTANCE", value)
    with pytest.raises(ValidationError, match="max_steps_per_instance"):
        Settings()


def test_the_application_is_built_with_the_setting(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path}/store.db", max_steps_per_instance=123)
    assert build_application(settings).max_steps_per_instance == 123
