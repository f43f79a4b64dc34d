"""End-to-end fixtures: a real Daphne server process on the test database, emulated banks, a TCP proxy."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from devices.actions import rotate_token
from devices.emulators.bank import EmulatedBank, SlotSpec
from devices.models import LockerBank
from lockerhub import signing
from lockerhub.audit import SYSTEM

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def server_env() -> dict[str, str]:
    """The environment of a server process that shares this test run's database and Redis."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY if len(settings.SECRET_KEY) >= 50 else "e2e-" + "x" * 60,
        "LOCKERHUB_HTTPS": "0",
        "LOCKERHUB_MANIFEST_STATIC": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOCKERHUB_DATA_DIR": str(settings.DATA_DIR),
        # The same snapshot key as this process, so tests can hand workers its public half.
        "LOCKERHUB_SNAPSHOT_SIGNING_KEY": signing.private_key_text(),
        "PYTHONPATH": str(ROOT),
    }


class Daphne:
    """A Daphne process serving the ASGI application on the test database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(settings.DATA_DIR) / f"daphne-e2e-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "lockerhub.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, timeout=30, what="daphne to answer /healthz")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"daphne exited with {self.process.returncode}; see {self.log.name}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:  # noqa: S310 - loopback
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.log.closed:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker) -> Iterator[str]:
    """A Daphne process serving the ASGI application on the test database. Yields its base URL."""
    with django_db_blocker.unblock():
        env = server_env()
    server = Daphne(env)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def start_daphne(django_db_setup, django_db_blocker) -> Iterator[Callable[..., Daphne]]:
    """Start another Daphne on the test database with some settings changed.

    Stopped at the end of the session, if the test has not stopped it."""
    servers: list[Daphne] = []

    def start(**env: str) -> Daphne:
        with django_db_blocker.unblock():
            base = server_env()
        servers.append(Daphne({**base, **env}))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class TcpProxy:
    """A loopback TCP relay between a worker and the server that a test can cut, one way or both."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.upstream = True  # worker → server bytes are forwarded
        self.downstream = True  # server → worker bytes are forwarded
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, flowing: Callable[[], bool]
        ) -> None:
            try:
                while data := await src.read(65536):
                    if flowing():
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, lambda: self.upstream),
            pipe(up_reader, writer, lambda: self.downstream),
        )

    def drop_connections(self) -> None:
        async def close_all() -> None:
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def emulated_bank(asgi_server: str, world, tmp_path: Path) -> Callable[..., EmulatedBank]:
    """Start an emulated BANK-A (boards, meter, reader) with the real worker process; stopped after the test."""
    started: list[EmulatedBank] = []
    proxies: list[TcpProxy] = []

    def start(
        *,
        through_proxy: bool = False,
        auto_person: bool = False,
        bank: LockerBank | None = None,
        server: str | None = None,
        kiosk_port: int = 0,
    ) -> EmulatedBank:
        bank = bank or world.bank
        token = rotate_token(bank, actor=SYSTEM)
        server_port = int((server or asgi_server).rsplit(":", 1)[1])
        if through_proxy:
            proxy = TcpProxy(server_port).start()
            proxies.append(proxy)
            server_port = proxy.port
        slots = [
            SlotSpec(number=s.number, board=s.board, lock_index=s.lock_index, present=bool(s.present),
                     current_ma=30 if s.present else 0)
            for s in bank.slots.order_by("number")
        ]  # fmt: skip
        emulated = EmulatedBank(
            bank.code,
            slots,
            server=f"ws://127.0.0.1:{server_port}",
            token=token,
            data_dir=tmp_path,
            auto_person=auto_person,
            person_delay=0.3,
            worker_log_level="INFO",
            server_key=signing.public_key_text(),
            kiosk_port=kiosk_port,
        )
        emulated.start(control=False)
        emulated.proxy = proxies[-1] if through_proxy else None
        started.append(emulated)
        return emulated

    yield start
    for emulated in started:
        emulated.stop()
    for proxy in proxies:
        proxy.stop()


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread
    while it is open, which would break later tests that start their own loop.
    """
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # think test code is async; the test's own ORM calls are plain synchronous ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _launch(sync_playwright):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser, asgi_server: str):
    """A fresh browser context and page; ``page.base_url`` is the server's URL."""
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def save_screenshot(page, name: str) -> Path:
    """Keep a screenshot under artifacts/ (CI keeps the folder)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
