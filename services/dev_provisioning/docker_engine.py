"""Is a Docker engine reachable? Asked the way testcontainers would reach it (DOCKER_HOST)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit


def docker_available(timeout: float = 0.5) -> bool:
    """Whether a Docker engine answers ``/_ping``; fast when there is none."""
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        if docker_host.startswith("unix://"):
            path = docker_host[len("unix://") :]
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = path
        elif docker_host.startswith("tcp://"):
            parts = urlsplit(docker_host)
            if not parts.hostname:
                return False
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(request)
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]
