"""Browser provisioning without touching the machine: what is found, what would be installed,
and the reasons given when nothing can be (commands are recorded, never run)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from services.dev_provisioning import browser as provisioning
from services.dev_provisioning.browser import BrowserProvisioningError, ensure_browser


def _which(present: set[str]) -> Any:
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_a_browser_on_the_path_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioning.shutil, "which", _which({"chromium", "chromedriver"}))
    monkeypatch.setattr(provisioning.subprocess, "run", _refuse)
    found = ensure_browser()
    assert (found.binary, found.driver) == ("/usr/bin/chromium", "/usr/bin/chromedriver")


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"ran {args}")


def test_missing_as_root_installs_debians_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"apt-get"}
    ran: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        if "install" in command:
            present.update({"chromium", "chromedriver"})
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(provisioning.shutil, "which", lambda n: _which(present)(n))
    monkeypatch.setattr(provisioning.subprocess, "run", run)
    monkeypatch.setattr(provisioning.os, "geteuid", lambda: 0)
    assert ensure_browser().driver == "/usr/bin/chromedriver"
    assert ran == [
        ["/usr/bin/apt-get", "update"],
        ["/usr/bin/apt-get", "install", "-y", "--no-install-recommends", "chromium",
         "chromium-driver"],
    ]  # fmt: skip


def test_without_apt_get_or_root_the_reason_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioning.shutil, "which", _which(set()))
    with pytest.raises(BrowserProvisioningError, match="no apt-get"):
        ensure_browser()

    monkeypatch.setattr(provisioning.shutil, "which", _which({"apt-get"}))
    monkeypatch.setattr(provisioning.os, "geteuid", lambda: 1000)
    with pytest.raises(BrowserProvisioningError, match="needs root"):
        ensure_browser()


def test_a_failed_install_names_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package\n")

    monkeypatch.setattr(provisioning.shutil, "which", _which({"apt-get"}))
    monkeypatch.setattr(provisioning.subprocess, "run", run)
    monkeypatch.setattr(provisioning.os, "geteuid", lambda: 0)
    with pytest.raises(BrowserProvisioningError, match="apt-get update failed .*locate package"):
        ensure_browser()


def test_the_make_step_fails_only_when_backends_are_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(provisioning.shutil, "which", _which(set()))
    monkeypatch.delenv("FLOWLEDGER_REQUIRE_BACKENDS", raising=False)
    assert provisioning.main() == 0
    assert "will skip" in capsys.readouterr().out
    monkeypatch.setenv("FLOWLEDGER_REQUIRE_BACKENDS", "1")
    assert provisioning.main() == 1
    assert "will fail" in capsys.readouterr().out
