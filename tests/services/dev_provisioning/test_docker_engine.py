"""Docker detection answers False, without hanging, where no engine listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.dev_provisioning.docker_engine import docker_available


def test_a_missing_docker_socket_means_no_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    assert docker_available() is False


def test_a_refused_tcp_docker_host_means_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert docker_available() is False


def test_an_unknown_docker_host_scheme_means_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://somewhere")
    assert docker_available() is False
