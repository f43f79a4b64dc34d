"""Tap-to-unlock latency with the bank deciding: N emulated banks, real workers, Daphne, PostgreSQL.

Measures, for every badge tap, the time from the bank worker receiving the UID (the moment
:meth:`BankWorker.submit_badge` is called, as the badge reader does) to the unlock frame
arriving at the emulated KR-CU16 board (``KerongBoardEmulator.unlock_log``). Both are
``time.monotonic()``, which on Linux is one clock for every process on the machine. The worker
decides the tap itself from the server's signed access snapshot (``access.core.decide``),
journals it and writes the unlock frame before ``submit_badge`` returns; the server only
records what happened (docs/device-protocol.md)::

    .venv/bin/python -m bench.tap_to_unlock                  # 50 banks, 100 taps/s, 30 s: real, then floor
    .venv/bin/python -m bench.tap_to_unlock --banks 10 --rate 20 --duration 20
    .venv/bin/python -m bench.tap_to_unlock --rounds 3       # real, floor, real, floor, ...
    .venv/bin/python -m bench.tap_to_unlock --outage 60      # the server stopped for 60 s mid-load

Runs, one after the other in one invocation, each on a fresh database:

- **real**: the real :class:`BankWorker` at every bank.
- **floor**: the same load with :class:`FloorWorker`, the real worker whose bank state
  (:class:`FloorBankState`) journals each read as the same ``tap`` event and unlocks at once,
  without deciding: no snapshot, rule or loan is looked at, the door is picked by what is
  physically in the slots. What the floor costs is what reading, journaling (one durable SQLite
  commit) and the serial bus cost on this machine with this load; ``p99(real) / p99(floor)``
  is what deciding at the bank adds. Goal: at most 1.2, and p99 ≤ 25 ms wherever the floor
  itself is under 20 ms. On a machine whose other load comes and goes, ``--rounds N``
  alternates the two N times and compares the pooled taps.
- **outage** (``--outage N``, instead of the two): the real run, during which Daphne is stopped
  for N seconds (``--outage-at`` seconds into the measured load) and then started again on the
  same port. Taps must keep unlocking while it is down; after the load every journal must
  drain (``--drain-timeout``), and the database is then checked: every event the workers
  journaled applied exactly once (each bank's ``last_event_seq`` equals its worker's last
  seq, one ``AccessEvent`` per tap journaled, none twice for one bank, time and UID).

What runs per run: a fresh PostgreSQL database (dropped and made again, dropped at the end
unless ``--keep-db``), migrated and filled by ``bench/tap_world.py``; ``--servers`` Daphne
processes on loopback, started with a signing key made for the run
(``LOCKERHUB_SNAPSHOT_SIGNING_KEY``) whose public half every worker gets; ``--processes`` load
processes, each hosting its share of banks as a pty board emulator plus the worker (real
journal, real serial driver, real WebSocket). The load starts once every worker holds its
snapshot. An emulated person at every bank reacts to an unlock: takes the device out (or puts
it back) and closes the door, so the slots recycle; each employee's taps alternate take and
return.

The load is open-loop: taps go out on a fixed schedule (``--rate`` in total, spread evenly
over the banks) whether or not earlier ones have finished. Taps during ``--warmup`` are not
counted. A granted tap whose unlock frame does not reach the board within ``--fail-after``
seconds, or that raised, is a failure; a denial is counted apart with its reason.

This module does not load Django: the data is built and checked in child processes, so
``main`` can be called from inside another Django process (the test suite's smoke test does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import math
import multiprocessing
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/tap_to_unlock.py
    sys.path.insert(0, str(ROOT))

from access import core  # noqa: E402
from devices.drivers.base import open_lock_bus  # noqa: E402
from devices.emulators.kerong import KerongBoardEmulator  # noqa: E402
from devices.worker import BankWorker  # noqa: E402
from devices.worker_bank import BankState  # noqa: E402
from devices.worker_config import SlotConfig  # noqa: E402

log = logging.getLogger("bench.tap_to_unlock")

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lockerhub_bench_tap"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
REDIS_SERVER_ARGS = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Bounds on everything that waits, so the benchmark always stops by itself.
SETUP_TIMEOUT = 120.0
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# The goal line of "Banks decide at the bank" (docs/benchmarks.md).
GOAL_RATIO = 1.2
GOAL_P99_MS = 25.0
GOAL_FLOOR_MS = 20.0
REAL, FLOOR, OUTAGE = "real", "floor", "outage"


# -- options and plan ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.tap_to_unlock``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.tap_to_unlock",
        description="Badge tap to unlock frame latency, decided at the bank, with N emulated "
        "banks on real WebSockets; against the floor of a worker that does not decide.",
    )
    parser.add_argument("--banks", type=int, default=50, help="emulated banks (default 50)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="taps per second, all banks (default 100)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="measured seconds per run (default 30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of load not counted (default 3)"
    )
    parser.add_argument(
        "--runs",
        choices=["both", REAL, FLOOR],
        default="both",
        help="both (default): the real worker, then the floor; or only one of them",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with both: alternate real and floor runs this many times and compare the pooled "
        "taps, which evens out a machine whose other load comes and goes (default 1)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="instead: one real run with the server stopped this long mid-load, then started "
        "again, and the database checked for every journaled event applied exactly once",
    )
    parser.add_argument(
        "--outage-at",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds into the measured load when the server stops (default 5); the load "
        "goes on for at least 5 s after it is back",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="after an outage run, seconds to wait for every journal to drain (default 600)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=min(4, max(2, os.cpu_count() or 2)),
        help="load processes hosting the banks (default: cores, 2 to 4)",
    )
    parser.add_argument("--servers", type=int, default=1, help="Daphne processes (default 1)")
    parser.add_argument(
        "--poll-hz", type=float, default=10.0, help="lock bus polls per second (default 10)"
    )
    parser.add_argument(
        "--person-delay",
        type=float,
        default=0.15,
        help="seconds the emulated person takes to move the device, then to close (default 0.15)",
    )
    parser.add_argument(
        "--fail-after",
        type=float,
        default=2.0,
        help="a granted tap without an unlock this long is a failure (default 2)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL URL; its database is dropped and made afresh (default {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"default {DEFAULT_REDIS_URL}"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="leave the last run's database for inspection"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the figures (and every tap) to FILE"
    )
    parser.add_argument(
        "--log-dir", metavar="DIR", help="keep the servers' logs in DIR (default: thrown away)"
    )
    return parser


def employees_per_bank(rate_per_bank: float) -> int:
    """How many people tap in turn at one bank.

    Enough that one person's next tap comes seconds after the last (their door has closed and
    the take or return completed by then), and at most 10, so that with every one of them
    holding a device at least 2 of the 12 slots still hold one.
    """
    return min(10, max(4, math.ceil(3.0 * rate_per_bank)))


def measured_duration(opts: argparse.Namespace) -> float:
    """Seconds of measured load: ``--duration``, stretched to cover an outage and 5 s after."""
    if opts.outage:
        return max(opts.duration, opts.outage_at + opts.outage + 5.0)
    return opts.duration


@dataclass(frozen=True)
class BankPlan:
    """One emulated bank and the taps it will see."""

    index: int
    code: str
    token: str
    server: str
    server_key: str
    slots: list[tuple[int, int, int, bool]]  # number, board, lock_index, present
    uids: list[str]


@dataclass
class Tap:
    """One scheduled badge tap and what became of it (all times ``time.monotonic()``)."""

    bank: str
    uid: str
    scheduled: float
    measured: bool
    submitted: float | None = None  # submit_badge called: the UID is read
    returned: float | None = None  # submit_badge returned: decided, journaled, unlocked
    seq: int | None = None
    granted: bool | None = None
    reason: str | None = None
    slot: int | None = None
    again: bool = False
    called: float | None = None  # the unlock handed to the lock bus
    unlocked: float | None = None  # the unlock frame at the board
    error: str | None = None

    @property
    def latency(self) -> float | None:
        if self.unlocked is None or self.submitted is None:
            return None
        return self.unlocked - self.submitted


# -- the workers --------------------------------------------------------------------------------


class TimedBus:
    """A lock bus that notes when each unlock is handed to it (monotonic), then passes it on."""

    def __init__(self, bus: Any) -> None:
        self._bus = bus
        self.unlock_calls: list[tuple[float, int, int]] = []

    def unlock(self, board: int, lock_index: int) -> Any:
        self.unlock_calls.append((time.monotonic(), board, lock_index))
        return self._bus.unlock(board, lock_index)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


class MeasuredWorker(BankWorker):
    """The real worker, plus notes for the benchmarks: when it came online or went offline,
    and ``on_access(worker)`` called after each access snapshot or delta it took in."""

    def __init__(
        self, *args: Any, on_access: Callable[[BankWorker], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.online_changes: list[tuple[float, bool]] = []
        self.on_access = on_access

    def _set_online(self, online: bool) -> None:
        self.online_changes.append((time.monotonic(), online))
        super()._set_online(online)

    async def _on_access(self, session: Any, message: dict[str, Any]) -> None:
        await super()._on_access(session, message)
        if self.on_access is not None:
            self.on_access(self)


class FloorBankState(BankState):
    """The worker's bank without the decision: the floor deciding at the bank is measured on.

    :meth:`BankState.decide_tap` runs as it is — under the state lock, the hold and the
    ``tap`` event journaled in one commit, then the unlock frame — but :meth:`_decide` takes
    the door from no snapshot, rule or loan: the first closed, unheld door with a device in
    for someone who holds none, the first empty one for someone who does (the floor's own note
    of who took what). The event names the asset, so the server records the same takes and
    returns as in the real run and does the same work.
    """

    floor_assets: dict[int, str] | None = None  # slot -> asset tag in it
    floor_holding: dict[str, str]  # UID -> asset tag taken

    def _decide(self, uid: str, now: float) -> core.Decision:
        door = self._floor_door(uid)
        if door is None:
            return core.Decision(False, core.Reason.NO_ASSET_AVAILABLE)
        purpose, cfg, asset = door
        granted = (
            core.Reason.GRANTED_TAKE if purpose == core.Purpose.TAKE else core.Reason.GRANTED_RETURN
        )
        return core.Decision(True, granted, purpose=purpose, slot=cfg.slot, asset=asset)

    def _floor_door(self, uid: str) -> tuple[core.Purpose, SlotConfig, str] | None:
        if self.floor_assets is None:
            # Where the devices are when the load starts: as the server's snapshot says.
            slots = {} if self.snapshot is None else self.snapshot.slots
            self.floor_assets = {n: info.asset for n, info in slots.items() if info.asset}
            self.floor_holding = {}
        taken = self.floor_holding.get(uid)
        for cfg in self._slots:
            state = self._states.get(cfg.slot)
            if state is None or state.door_open is not False or cfg.slot in self._holds:
                continue
            if taken is None and state.present and cfg.slot in self.floor_assets:
                asset = self.floor_assets.pop(cfg.slot)
                self.floor_holding[uid] = asset
                return core.Purpose.TAKE, cfg, asset
            if taken is not None and state.present is False and cfg.slot not in self.floor_assets:
                self.floor_assets[cfg.slot] = self.floor_holding.pop(uid)
                return core.Purpose.RETURN, cfg, taken
        return None


class FloorWorker(MeasuredWorker):
    """The real worker with :class:`FloorBankState` in place of its bank state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same object, another class: everything the worker wired to it (its command
        # runner holds bound methods) stays as it is; only ``_decide`` differs.
        self.state.__class__ = FloorBankState


# -- the load process ---------------------------------------------------------------------------


class EmulatedSite:
    """The banks of one load process: emulators, workers and the people standing at them."""

    def __init__(
        self,
        plans: list[BankPlan],
        opts: argparse.Namespace,
        journal_dir: Path,
        *,
        floor: bool = False,
        on_access: Callable[[BankWorker], None] | None = None,
    ):
        self.plans = plans
        self.opts = opts
        self.floor = floor
        self.on_access = on_access
        self.emulators: dict[str, KerongBoardEmulator] = {}
        self.buses: dict[str, TimedBus] = {}
        self.workers: dict[str, MeasuredWorker] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.journal_dir = journal_dir

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        self.loop = loop
        tasks = []
        worker_class = FloorWorker if self.floor else MeasuredWorker
        for plan in self.plans:
            emulator = KerongBoardEmulator(
                sorted({board for _, board, _, _ in plan.slots}),
                on_unlock=lambda board, lock, code=plan.code: self._on_unlock(code, board, lock),
            )
            for _, board, lock_index, present in plan.slots:
                emulator.set_present(board, lock_index, present)
            emulator.start()
            self.emulators[plan.code] = emulator
            self.buses[plan.code] = TimedBus(open_lock_bus("kerong-cu16", emulator.port))
            worker = worker_class(
                plan.server,
                plan.code,
                plan.token,
                self.buses[plan.code],
                server_key=plan.server_key,
                journal_path=self.journal_dir / f"{plan.code}.sqlite3",
                kiosk_port=0,
                poll_hz=self.opts.poll_hz,
                on_access=self.on_access,
            )
            self.workers[plan.code] = worker
            tasks.append(loop.create_task(worker.run(), name=f"worker {plan.code}"))
        return tasks

    def ready(self) -> bool:
        """Every worker has its config and its snapshot, and the server has every event."""
        return all(
            w.slots and w.snapshot_version is not None and not w.journal.pending_messages()
            for w in self.workers.values()
        )

    def drained(self) -> bool:
        """The server has acknowledged every event of every journal."""
        return not any(w.journal.pending_messages() for w in self.workers.values())

    def _on_unlock(self, code: str, board: int, lock_index: int) -> None:
        # Called on the emulator thread right after the frame was logged.
        loop = self.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed while stopping
                loop.call_soon_threadsafe(self._person_at_door, code, board, lock_index)

    def _person_at_door(self, code: str, board: int, lock_index: int) -> None:
        """Someone swings the door open, takes the device (or puts it back) and closes it."""
        assert self.loop is not None
        emulator = self.emulators[code]
        delay = self.opts.person_delay

        def move() -> None:
            emulator.set_present(board, lock_index, not emulator.present(board, lock_index))

        self.loop.call_later(delay, move)
        self.loop.call_later(2 * delay, emulator.close_door, board, lock_index)

    def journals(self) -> list[dict[str, Any]]:
        """What each worker's journal says (readable after the worker stopped)."""
        return [
            {
                "bank": code,
                "worker_id": worker.worker_id,
                "last_seq": worker.journal.last_seq,
                "pending": len(worker.journal.pending_messages()),
                "notes": len(worker.state.notes),
                "online_changes": worker.online_changes,
            }
            for code, worker in self.workers.items()
        ]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def close(self) -> None:
        for bus in self.buses.values():
            bus.close()
        for emulator in self.emulators.values():
            emulator.stop()


async def wait_until(
    condition: Callable[[], bool], runs: list[asyncio.Task[None]], timeout: float, what: str
) -> float:
    """Poll ``condition`` until true (returns the monotonic time it became so); RuntimeError
    when a worker ended, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        failed = [t for t in runs if t.done()]
        if failed:
            raise RuntimeError(f"{failed[0].get_name()} ended: {failed[0].exception()!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(0.05)
    return time.monotonic()


def schedule(plans: list[BankPlan], opts: argparse.Namespace, start: float) -> list[Tap]:
    """Every tap of ``plans``: bank i of N taps at start + i/rate + k·N/rate, people in turn."""
    interval = opts.banks / opts.rate
    end = start + opts.warmup + measured_duration(opts)
    taps = []
    for plan in plans:
        at, k = start + plan.index / opts.rate, 0
        while at < end:
            uid = plan.uids[k % len(plan.uids)]
            taps.append(Tap(plan.code, uid, at, measured=at >= start + opts.warmup))
            k += 1
            at += interval
    taps.sort(key=lambda t: t.scheduled)
    return taps


def _tapper(site: EmulatedSite, taps: list[Tap], halt: threading.Event) -> None:
    """Present each badge on time, from a small pool as independent readers would."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="reader")

    def present(tap: Tap) -> None:
        tap.submitted = time.monotonic()
        try:
            result = site.workers[tap.bank].submit_badge(tap.uid)
        except Exception as exc:
            tap.error = f"{type(exc).__name__}: {exc}"
            return
        finally:
            tap.returned = time.monotonic()
        tap.seq, tap.granted, tap.reason = result.seq, result.granted, result.reason
        tap.slot, tap.again = result.decision.slot, result.decision.again

    for tap in taps:
        delay = tap.scheduled - time.monotonic()
        if delay > 0 and halt.wait(delay):
            break
        pool.submit(present, tap)
    pool.shutdown(wait=True)


def _first_between(times: list[float], start: float, end: float) -> float | None:
    return next((t for t in times if start <= t <= end), None)


def _resolve(site: EmulatedSite, taps: list[Tap]) -> None:
    """Join each granted tap with the unlock of its door made while ``submit_badge`` ran."""
    by_bank: dict[str, list[Tap]] = defaultdict(list)
    for tap in taps:
        by_bank[tap.bank].append(tap)
    for plan in site.plans:
        lock_of = {number: (board, lock) for number, board, lock, _ in plan.slots}
        frames: dict[tuple[int, int], list[float]] = defaultdict(list)
        for at, board, lock in site.emulators[plan.code].unlock_log:
            frames[(board, lock)].append(at)
        calls: dict[tuple[int, int], list[float]] = defaultdict(list)
        for at, board, lock in site.buses[plan.code].unlock_calls:
            calls[(board, lock)].append(at)
        for tap in by_bank[plan.code]:
            if not tap.granted or tap.again or tap.slot not in lock_of:
                continue
            assert tap.submitted is not None
            assert tap.returned is not None
            door = lock_of[tap.slot]
            # A door is held from its tap until it closes again: one unlock per window.
            tap.called = _first_between(calls[door], tap.submitted, tap.returned)
            tap.unlocked = _first_between(frames[door], tap.submitted, tap.returned)


async def _host(
    plans: list[BankPlan],
    opts: argparse.Namespace,
    kind: str,
    queue: Any,
    go: Any,
    start_at: Any,
) -> dict[str, Any]:
    """Run the banks of ``plans`` through the load; returns the taps, CPU and journals."""
    loop = asyncio.get_running_loop()
    journal_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-journals-"))
    site = EmulatedSite(plans, opts, journal_dir, floor=kind == FLOOR)
    halt = threading.Event()
    runs: list[asyncio.Task[None]] = []
    drained_at = None
    try:
        runs = site.start(loop)
        await wait_until(site.ready, runs, READY_TIMEOUT, "banks not connected with a snapshot")
        queue.put(("ready", os.getpid(), None))
        if not await asyncio.to_thread(go.wait, READY_TIMEOUT):
            raise RuntimeError("no start signal")
        cpu_before = time.process_time()
        taps = schedule(plans, opts, start_at.value)
        await asyncio.to_thread(_tapper, site, taps, halt)
        # The last people close their doors, and the pollers see it.
        await asyncio.sleep(2 * opts.person_delay + 2 / opts.poll_hz + 0.3)
        if kind == OUTAGE:
            # Not drained in time: the check below reports what is still unacknowledged.
            with contextlib.suppress(TimeoutError):
                drained_at = await wait_until(
                    site.drained, runs, opts.drain_timeout, "journals not drained"
                )
        cpu = time.process_time() - cpu_before
        _resolve(site, taps)
    finally:
        halt.set()
        site.stop()
        if runs:
            await asyncio.wait(runs, timeout=STOP_TIMEOUT)
        site.close()
        shutil.rmtree(journal_dir, ignore_errors=True)
    return {
        "taps": [asdict(t) for t in taps],
        "cpu": cpu,
        "journals": site.journals(),
        "drained_at": drained_at,
    }


def load_process(plans: list[BankPlan], opts: argparse.Namespace, kind: str, queue: Any, go: Any, start_at: Any) -> None:  # fmt: skip
    """Entry point of one load process: host ``plans`` and send the outcome back on ``queue``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if kind == OUTAGE:
        # Every worker says, again and again, that it cannot reach the server: that is the point.
        logging.getLogger("devices.worker").setLevel(logging.ERROR)
    try:
        outcome = asyncio.run(_host(plans, opts, kind, queue, go, start_at))
    except BaseException as exc:
        queue.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(("done", os.getpid(), outcome))


# -- the server side ----------------------------------------------------------------------------


def database_name(url: str) -> str:
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    if not DB_NAME.match(name):
        raise ValueError(f"--database-url must name a database (a-z, 0-9, _), got {name!r}")
    return name


def _maintenance_url(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def recreate_database(url: str) -> None:
    """Drop the benchmark's database if it exists and make it afresh."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database_name(url))
            )
        )


def ensure_redis(url: str) -> None:
    """Make sure Redis answers at ``url``; start the local server if it is the default one."""
    import redis

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    if answers():
        return
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in {"127.0.0.1", "localhost"} and (parts.port or 6379) == 6379:
        log.warning("Redis is not running; starting it: %s", " ".join(REDIS_SERVER_ARGS))
        subprocess.run(REDIS_SERVER_ARGS, check=True, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if answers():
                return
            time.sleep(0.1)
    raise RuntimeError(f"Redis does not answer at {url}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds this machine has spent on anything but idling, all cores together."""
    with contextlib.suppress(OSError):
        # cpu user nice system idle iowait irq softirq steal ... (proc(5))
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return math.nan


def database_backend_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark's database (empty if unknown)."""
    import psycopg

    try:
        with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [database_name(url)],
            ).fetchall()
    except psycopg.Error:
        return []
    return [pid for (pid,) in rows]


@dataclass
class CpuMeter:
    """CPU used between ``start`` and ``stop``: Daphne, PostgreSQL, the whole machine.

    The load processes measure their own (they are gone by the time the run stops).
    """

    servers: list[int]
    database_url: str
    before: dict[int, float] = field(default_factory=dict)
    machine_before: float = math.nan
    started: float = math.nan
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.started = time.monotonic()
        self.machine_before = machine_busy_seconds()
        pids = self.servers + database_backend_pids(self.database_url)
        self.before = {pid: cpu_seconds(pid) for pid in pids}

    def stop(self) -> None:
        def spent(pids: list[int]) -> float:
            # A database backend that connected during the run counts from zero.
            return sum(cpu_seconds(pid) - self.before.get(pid, 0.0) for pid in pids)

        self.used = {
            "server": spent(self.servers),
            "database": spent(database_backend_pids(self.database_url)),
            "machine": machine_busy_seconds() - self.machine_before,
            "wall": time.monotonic() - self.started,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One Daphne process."""

    process: subprocess.Popen
    port: int
    log: TextIO

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def peak_rss_kib(self) -> int | None:
        """VmHWM: the most resident memory the process ever had."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def signing_key_pair() -> tuple[str, str]:
    """A fresh Ed25519 key for the server's snapshots: (seed for the server's
    ``LOCKERHUB_SNAPSHOT_SIGNING_KEY``, public key for the workers), both base64."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(seed).decode(), core.public_key_text(key)


def server_env(
    database_url: str, redis_url: str, data_dir: Path, *, signing_key: str | None = None
) -> dict[str, str]:
    """The environment of a server (or Django child) process on the benchmark's database;
    ``signing_key`` is the seed it signs access snapshots with."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOCKERHUB_", "PYTEST"))
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=secrets.token_urlsafe(48),
        LOCKERHUB_HTTPS="0",
        LOCKERHUB_DATA_DIR=str(data_dir),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SETTINGS_MODULE="lockerhub.settings",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    if signing_key is not None:
        env["LOCKERHUB_SNAPSHOT_SIGNING_KEY"] = signing_key
    return env


def run_python(
    args: list[str], env: dict[str, str], what: str, timeout: float = SETUP_TIMEOUT
) -> str:
    """Run ``python args`` in the project with ``env``; its standard output, or RuntimeError."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def start_server(env: dict[str, str], log_dir: Path, port: int | None = None) -> Server:
    """Start Daphne with LockerHub on loopback (``port``, or a free one); returns once it
    answers ``/healthz``."""
    port = port or free_port()
    log_file = open(log_dir / f"daphne-{port}.log", "a")  # noqa: SIM115 - closed by Server.stop
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "lockerhub.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Server(process, port, log_file)
    deadline = time.monotonic() + SETUP_TIMEOUT
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"daphne exited with {process.returncode}; see {log_file.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"daphne did not answer within {SETUP_TIMEOUT:.0f} s")
        time.sleep(0.1)


# -- figures ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Outage:
    """When the server was away during an outage run (monotonic), and what came after."""

    seconds: float
    drain_timeout: float
    down_at: float = math.nan  # Daphne told to stop
    up_at: float = math.nan  # Daphne answering again
    load_end: float = math.nan
    drained_at: float = math.nan
    all_online_at: float = math.nan
    taps: int = 0
    unlocks: int = 0
    failures: int = 0
    denials: int = 0


@dataclass
class Report:
    """The figures of one run."""

    kind: str
    banks: int
    target_rate: float
    duration: float
    processes: int
    servers: int
    cores: int
    fail_after: float
    taps_sent: int = 0
    achieved_rate: float = 0.0
    unlocks: int = 0
    unlock_rate: float = 0.0
    failures: int = 0
    again: int = 0
    denials: Counter = field(default_factory=Counter)
    latency_ms: dict[str, float] = field(default_factory=dict)
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    send_lag_p99_ms: float = 0.0
    server_peak_rss_mib: list[float] = field(default_factory=list)
    # CPU time per tap over the whole load, warm-up and drain included: Daphne (all servers),
    # the load processes (emulated boards, workers, people), PostgreSQL's backends for the
    # benchmark's database, and the whole machine (these three, Redis and everything else).
    server_cpu_ms_per_tap: float = math.nan
    load_cpu_ms_per_tap: float = math.nan
    database_cpu_ms_per_tap: float = math.nan
    machine_cpu_ms_per_tap: float = math.nan
    machine_busy_cores: float = math.nan
    # Events the server had not acknowledged when the load ended, all banks (its backlog), and
    # the most local notes (takes and returns the server has not confirmed) one bank held.
    backlog_at_end: int = 0
    notes_at_end: int = 0
    failure_examples: list[str] = field(default_factory=list)
    outage: Outage | None = None
    applied: dict[str, Any] | None = None

    def table(self) -> str:
        rss = self.server_peak_rss_mib
        rss_text = " + ".join(f"{m:.0f}" for m in rss) + (
            f" = {sum(rss):.0f}" if len(rss) > 1 else ""
        )
        denied = sum(self.denials.values())
        reasons = ", ".join(f"{r} {n}" for r, n in self.denials.most_common()) or "-"
        lat = self.latency_ms
        rows = [
            ("cores", f"{self.cores}"),
            ("banks", f"{self.banks}"),
            ("load processes / servers", f"{self.processes} / {self.servers}"),
            ("target taps/s", f"{self.target_rate:g}"),
            ("taps sent (measured)", f"{self.taps_sent} in {self.duration:g} s"),
            ("achieved taps/s", f"{self.achieved_rate:.1f}"),
            ("unlocks", f"{self.unlocks} ({self.unlock_rate:.1f}/s sustained on time)"),
            ("failures", f"{self.failures} (no unlock within {self.fail_after:g} s)"),
            ("denials", f"{denied} ({reasons})"),
            ("door shown again", f"{self.again}"),
            ("latency p50 ms", f"{lat.get('p50', math.nan):.1f}"),
            ("latency p95 ms", f"{lat.get('p95', math.nan):.1f}"),
            ("latency p99 ms", f"{lat.get('p99', math.nan):.1f}"),
            ("latency max ms", f"{lat.get('max', math.nan):.1f}"),
            ("server peak RSS MiB", rss_text or "?"),
            ("server CPU ms per tap", f"{self.server_cpu_ms_per_tap:.1f}"),
            ("  PostgreSQL CPU ms per tap", f"{self.database_cpu_ms_per_tap:.1f}"),
            ("  load processes CPU ms per tap", f"{self.load_cpu_ms_per_tap:.1f}"),
            ("  machine CPU ms per tap", f"{self.machine_cpu_ms_per_tap:.1f}"),
            ("  machine busy (cores)", f"{self.machine_busy_cores:.2f} of {self.cores}"),
        ]
        for stage, figures in self.stages_ms.items():
            rows.append((f"  {stage} p50/p99 ms", f"{figures['p50']:.1f} / {figures['p99']:.1f}"))
        rows.append(("  tap sent late p99 ms", f"{self.send_lag_p99_ms:.1f}"))
        rows.append(("server backlog at the end (events)", f"{self.backlog_at_end}"))
        rows.append(("  local notes at the end, most at a bank", f"{self.notes_at_end}"))
        outage = self.outage
        if outage is not None:
            drained = (
                f"{outage.drained_at - outage.load_end:.1f}"
                if not math.isnan(outage.drained_at)
                else f"not within {outage.drain_timeout:g}"
            )
            rows += [
                ("server down s", f"{outage.up_at - outage.down_at:.1f} (asked for {outage.seconds:g})"),
                ("taps while it was down", f"{outage.taps}"),
                ("  unlocked", f"{outage.unlocks}"),
                ("  failed taps", f"{outage.failures} (0 expected)"),
                ("  denied", f"{outage.denials}"),
                ("every bank online again after s", f"{outage.all_online_at - outage.up_at:.1f}"),
                ("journals drained after the load s", drained),
            ]  # fmt: skip
        width = max(len(k) for k, _ in rows)
        lines = [f"tap-to-unlock benchmark: {self.kind}", "-" * (width + 24)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        lines += [f"failure: {text}" for text in self.failure_examples]
        if self.applied is not None:
            lines += ["", applied_table(self.applied)]
        return "\n".join(lines)


STAGES = {
    # The decision, the hold and the tap event journaled (one durable SQLite commit).
    "decide + journal": ("submitted", "called"),
    # The unlock frame written to the serial bus and read by the board.
    "frame to board": ("called", "unlocked"),
}


def summarise(
    taps: list[Tap], opts: argparse.Namespace, kind: str, servers: list[Server]
) -> Report:
    measured = [t for t in taps if t.measured]
    duration = measured_duration(opts)
    report = Report(
        kind=kind,
        banks=opts.banks,
        target_rate=opts.rate,
        duration=duration,
        processes=opts.processes,
        servers=opts.servers,
        cores=os.cpu_count() or 0,
        fail_after=opts.fail_after,
    )
    sent = [t for t in measured if t.submitted is not None]
    report.taps_sent = len(sent)
    if len(sent) > 1:
        span = max(t.submitted for t in sent) - min(t.submitted for t in sent)
        report.achieved_rate = (len(sent) - 1) / span if span > 0 else 0.0
    latencies = []
    for tap in sent:
        if tap.granted is False:
            report.denials[tap.reason or "?"] += 1
            continue
        if tap.again:
            report.again += 1
            continue
        latency = tap.latency
        if latency is not None:
            latencies.append(latency)
        if latency is None or latency > opts.fail_after:
            report.failures += 1
            if len(report.failure_examples) < 5:
                if tap.error:
                    what = tap.error
                elif latency is None:
                    what = f"no unlock of slot {tap.slot}"
                else:
                    what = f"unlock after {latency * 1000:.0f} ms"
                report.failure_examples.append(f"{tap.bank} {tap.uid} seq {tap.seq}: {what}")
    report.unlocks = len(latencies)
    report.unlock_rate = sum(1 for x in latencies if x <= opts.fail_after) / duration
    ms = [x * 1000 for x in latencies]
    report.latency_ms = {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else math.nan,
        "mean": statistics.fmean(ms) if ms else math.nan,
    }
    done = [t for t in sent if t.unlocked is not None and t.called is not None]
    for stage, (a, b) in STAGES.items():
        values = [(getattr(t, b) - getattr(t, a)) * 1000 for t in done]
        report.stages_ms[stage] = {"p50": percentile(values, 50), "p99": percentile(values, 99)}
    report.send_lag_p99_ms = percentile([(t.submitted - t.scheduled) * 1000 for t in sent], 99)
    report.server_peak_rss_mib = [(kib or 0) / 1024 for kib in (s.peak_rss_kib() for s in servers)]
    return report


def summarise_outage(outage: Outage, taps: list[Tap], journals: list[dict[str, Any]]) -> None:
    """What happened to the taps while the server was away, and how long it took to recover."""
    for tap in taps:
        if tap.submitted is None or not outage.down_at <= tap.submitted <= outage.up_at:
            continue
        outage.taps += 1
        if tap.granted is False:
            outage.denials += 1
        elif tap.error or (not tap.again and tap.unlocked is None):
            outage.failures += 1
        elif not tap.again:
            outage.unlocks += 1
    back = []
    for journal in journals:
        ups = [at for at, online in journal["online_changes"] if online and at >= outage.up_at]
        back.append(min(ups) if ups else math.nan)
    outage.all_online_at = max(back) if back else math.nan


def latencies_ms(taps: list[Tap]) -> list[float]:
    """The unlock latencies of the measured, granted taps that unlocked, in ms."""
    return [
        t.latency * 1000
        for t in taps
        if t.measured and t.granted and not t.again and t.latency is not None
    ]


def compare(real: list[Tap], floor: list[Tap], rounds: int) -> str:
    """The real worker against the floor (each kind's taps of every round pooled), and the
    goal line."""
    pooled = {REAL: latencies_ms(real), FLOOR: latencies_ms(floor)}
    figures = {kind: {p: percentile(ms, p) for p in (50, 95, 99)} for kind, ms in pooled.items()}
    title = "real worker against the floor"
    if rounds > 1:
        title += f" ({rounds} rounds each, taps pooled)"
    lines = [title, "-" * 64, f"{'':<16}{'real':>10}{'floor':>10}"]
    for p in (50, 95, 99):
        lines.append(f"{f'latency p{p} ms':<16}{figures[REAL][p]:>10.1f}{figures[FLOOR][p]:>10.1f}")
    lines.append(f"{'unlocks':<16}{len(pooled[REAL]):>10}{len(pooled[FLOOR]):>10}")
    real_p99, floor_p99 = figures[REAL][99], figures[FLOOR][99]
    ratio = real_p99 / floor_p99
    lines.append(f"ratio p99(real)/p99(floor)  {ratio:.2f}  (goal <= {GOAL_RATIO:g})")
    if floor_p99 < GOAL_FLOOR_MS:
        verdict = "met" if real_p99 <= GOAL_P99_MS and ratio <= GOAL_RATIO else "NOT met"
        lines.append(
            f"goal (floor p99 {floor_p99:.1f} ms < {GOAL_FLOOR_MS:g} ms, so real p99 <= "
            f"{GOAL_P99_MS:g} ms and ratio <= {GOAL_RATIO:g}): {verdict}"
        )
    else:
        verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
        lines.append(
            f"goal (floor p99 {floor_p99:.1f} ms >= {GOAL_FLOOR_MS:g} ms: the machine sets the "
            f"floor, so only ratio <= {GOAL_RATIO:g}): {verdict}"
        )
    return "\n".join(lines)


def check_applied(
    found: dict[str, Any], taps: list[Tap], journals: list[dict[str, Any]]
) -> dict[str, Any]:
    """Compare what the workers journaled with what the database applied (``bench.applied``)."""
    journaled: Counter = Counter(t.bank for t in taps if t.seq is not None)
    banks = found["banks"]
    seq_match = sum(
        1
        for j in journals
        if banks.get(j["bank"], {}).get("last_event_seq") == j["last_seq"]
        and banks[j["bank"]]["worker_id"] == j["worker_id"]
    )
    taps_by_bank_match = sum(
        1 for j in journals if banks.get(j["bank"], {}).get("access_events") == journaled[j["bank"]]
    )
    result = {
        "taps_journaled": sum(journaled.values()),
        "access_events": sum(b["access_events"] for b in banks.values()),
        "duplicates": found["duplicates"],
        "banks": len(journals),
        "banks_seq_match": seq_match,
        "banks_taps_match": taps_by_bank_match,
        "events_journaled": sum(j["last_seq"] for j in journals),
        "events_applied": sum(b["last_event_seq"] for b in banks.values()),
        "unacknowledged": sum(j["pending"] for j in journals),
        "failed_events": found["failed_events"],
        "failed_examples": found.get("failed_examples", []),
    }
    result["exactly_once"] = (
        result["taps_journaled"] == result["access_events"]
        and result["duplicates"] == 0
        and seq_match == len(journals) == taps_by_bank_match
        and result["unacknowledged"] == 0
        and result["failed_events"] == 0
    )
    if result["unacknowledged"] and result["duplicates"] == 0:
        result["exactly_once"] = None  # the server is still catching up: not known yet
    return result


def applied_table(applied: dict[str, Any]) -> str:
    rows = [
        ("taps journaled by the workers", f"{applied['taps_journaled']}"),
        ("access events in the database", f"{applied['access_events']}"),
        ("duplicate access events (bank, at, uid)", f"{applied['duplicates']}"),
        ("banks: last_event_seq = journal's last seq", f"{applied['banks_seq_match']} of {applied['banks']}"),
        ("banks: access events = taps journaled", f"{applied['banks_taps_match']} of {applied['banks']}"),
        ("events journaled / applied (all banks)", f"{applied['events_journaled']} / {applied['events_applied']}"),
        ("events left unacknowledged", f"{applied['unacknowledged']}"),
        ("events that failed on the server", f"{applied['failed_events']}"),
        (
            "exactly once",
            {True: "yes", False: "NO"}.get(
                applied["exactly_once"], "not known: the journals did not drain in time"
            ),
        ),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = ["exactly-once check (database after reconnect)", "-" * (width + 16)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"failed event: {text}" for text in applied["failed_examples"]]
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------------------------


def check_options(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    if not 1 <= opts.banks <= 1000:
        parser.error("--banks must be 1 to 1000")
    if not 0 < opts.rate <= 5000:
        parser.error("--rate must be above 0 and at most 5000")
    if not 0 < opts.duration <= 3600 or not 0 <= opts.warmup <= 600:
        parser.error("--duration must be 0-3600 s and --warmup 0-600 s")
    if not 0 <= opts.outage <= 3600 or not 0 <= opts.outage_at <= 3600:
        parser.error("--outage and --outage-at must be 0-3600 s")
    if not 1 <= opts.rounds <= 20:
        parser.error("--rounds must be 1-20")
    if not 1 <= opts.drain_timeout <= 7200:
        parser.error("--drain-timeout must be 1-7200 s")
    if not 1 <= opts.servers <= 16 or not 1 <= opts.processes <= 64:
        parser.error("--servers must be 1-16 and --processes 1-64")
    if opts.poll_hz < 5:
        parser.error("--poll-hz must be at least 5")
    try:
        database_name(opts.database_url)
    except ValueError as exc:
        parser.error(str(exc))
    opts.processes = min(opts.processes, opts.banks)


def prepare(
    opts: argparse.Namespace, work_dir: Path, people: int, banks: int | None = None
) -> tuple[dict[str, str], str, dict[str, Any]]:
    """A fresh database with the benchmark's world; (server env, workers' key, world)."""
    ensure_redis(opts.redis_url)
    recreate_database(opts.database_url)
    seed, public_key = signing_key_pair()
    env = server_env(opts.database_url, opts.redis_url, work_dir, signing_key=seed)
    run_python(["manage.py", "migrate", "--noinput"], env, "migrate")
    world_file = work_dir / "world.json"
    run_python(
        ["-m", "bench.tap_world", "--banks", str(banks or opts.banks), "--employees", str(people),
         "--out", str(world_file)],
        env,
        "building the data",
    )  # fmt: skip
    world = json.loads(world_file.read_text())
    world_file.unlink()
    return env, public_key, world


def plans_for(world: dict[str, Any], servers: list[Server], public_key: str) -> list[BankPlan]:
    return [
        BankPlan(
            index=i,
            code=bank["code"],
            token=bank["token"],
            server=servers[i % len(servers)].url,
            server_key=public_key,
            slots=[tuple(s) for s in bank["slots"]],
            uids=bank["uids"],
        )
        for i, bank in enumerate(world["banks"])
    ]


def run_once(opts: argparse.Namespace, kind: str) -> tuple[Report, list[Tap]]:
    """One run (``real``, ``floor`` or ``outage``): set up, load, tear down; figures and taps."""
    rate_per_bank = opts.rate / opts.banks
    people = employees_per_bank(rate_per_bank)
    if people / rate_per_bank < 1.0:
        log.warning(
            "%.1f taps/s per bank is more than 12 slots can turn over; expect denials",
            rate_per_bank,
        )
    work_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-"))
    servers: list[Server] = []
    processes: list[multiprocessing.process.BaseProcess] = []
    database_made = False
    try:
        database_made = True
        env, public_key, world = prepare(opts, work_dir, people)
        log_dir = Path(opts.log_dir) if opts.log_dir else work_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        servers = [start_server(env, log_dir) for _ in range(opts.servers)]
        plans = plans_for(world, servers, public_key)
        context = multiprocessing.get_context("spawn")
        queue, go, start_at = context.Queue(), context.Event(), context.Value("d", 0.0)
        for p in range(opts.processes):
            share = plans[p :: opts.processes]
            process = context.Process(
                target=load_process, args=(share, opts, kind, queue, go, start_at), daemon=True
            )
            process.start()
            processes.append(process)
        ready = 0
        while ready < len(processes):
            what, pid, detail = queue.get(timeout=READY_TIMEOUT + SETUP_TIMEOUT)
            if what != "ready":
                raise RuntimeError(f"load process {pid}: {detail}")
            ready += 1
        meter = CpuMeter(
            servers=[server.process.pid for server in servers], database_url=opts.database_url
        )
        meter.start()
        start_at.value = time.monotonic() + 0.5
        go.set()
        outage = None
        if kind == OUTAGE:
            outage = Outage(opts.outage, opts.drain_timeout)
            servers = interrupt(servers, env, log_dir, start_at.value + opts.warmup, opts, outage)
            outage.load_end = start_at.value + opts.warmup + measured_duration(opts)
        taps: list[Tap] = []
        journals: list[dict[str, Any]] = []
        drained: list[float] = []
        load_cpu = 0.0
        waiting = len(processes)
        limit = opts.warmup + measured_duration(opts) + opts.fail_after + STOP_TIMEOUT + 30
        if kind == OUTAGE:
            limit += opts.drain_timeout
        while waiting:
            what, pid, detail = queue.get(timeout=limit)
            if what == "error":
                raise RuntimeError(f"load process {pid}: {detail}")
            if what == "done":
                taps += [Tap(**t) for t in detail["taps"]]
                journals += detail["journals"]
                load_cpu += detail["cpu"]
                if detail["drained_at"] is not None:
                    drained.append(detail["drained_at"])
                waiting -= 1
        meter.stop()
        report = summarise(taps, opts, kind, servers)
        report.backlog_at_end = sum(j["pending"] for j in journals)
        report.notes_at_end = max((j["notes"] for j in journals), default=0)
        per_tap = 1000 / max(1, sum(1 for t in taps if t.submitted))
        if kind != OUTAGE:
            # Not after an outage: the server and its database connections were replaced.
            report.server_cpu_ms_per_tap = meter.used["server"] * per_tap
            report.database_cpu_ms_per_tap = meter.used["database"] * per_tap
        report.load_cpu_ms_per_tap = load_cpu * per_tap
        report.machine_cpu_ms_per_tap = meter.used["machine"] * per_tap
        report.machine_busy_cores = meter.used["machine"] / meter.used["wall"]
        if outage is not None:
            if len(drained) == len(processes):
                outage.drained_at = max(drained)
            summarise_outage(outage, taps, journals)
            report.outage = outage
            found = json.loads(run_python(["-m", "bench.applied"], env, "checking the database"))
            report.applied = check_applied(found, taps, journals)
        return report, taps
    finally:
        for process in processes:
            process.join(timeout=STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        for server in servers:
            server.stop()
        if database_made and not opts.keep_db:
            drop_database(opts.database_url)
        shutil.rmtree(work_dir, ignore_errors=True)


def interrupt(
    servers: list[Server],
    env: dict[str, str],
    log_dir: Path,
    load_start: float,
    opts: argparse.Namespace,
    outage: Outage,
) -> list[Server]:
    """Stop every Daphne ``--outage-at`` seconds into the measured load, start them again on
    the same ports ``--outage`` seconds later; returns the new servers."""
    time.sleep(max(0.0, load_start + opts.outage_at - time.monotonic()))
    outage.down_at = time.monotonic()
    log.info("stopping the server(s) for %g s", opts.outage)
    for server in servers:
        server.stop()
    time.sleep(max(0.0, outage.down_at + opts.outage - time.monotonic()))
    restarted = [start_server(env, log_dir, port=server.port) for server in servers]
    outage.up_at = time.monotonic()
    log.info("server(s) back after %.1f s", outage.up_at - outage.down_at)
    return restarted


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit status 1 if any tap failed (or, after an
    outage, an event was not applied exactly once)."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    check_options(parser, opts)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kinds = ([REAL, FLOOR] if opts.runs == "both" else [opts.runs]) * opts.rounds
    if opts.outage:
        kinds = [OUTAGE]
    runs: list[tuple[str, Report, list[Tap]]] = []
    for n, kind in enumerate(kinds):
        title = kind
        if opts.rounds > 1:
            title += f" (round {n // (len(kinds) // opts.rounds) + 1} of {opts.rounds})"
        log.info(
            "%s run: %d banks, %g taps/s for %g s (+%g s warm-up), %d load process(es), "
            "%d server(s)",
            title, opts.banks, opts.rate, measured_duration(opts), opts.warmup, opts.processes,
            opts.servers,
        )  # fmt: skip
        report, taps = run_once(opts, kind)
        report.kind = title
        runs.append((kind, report, taps))
        print(report.table(), "", sep="\n", flush=True)
    if opts.runs == "both" and not opts.outage:
        real = [t for kind, _, taps in runs if kind == REAL for t in taps]
        floor = [t for kind, _, taps in runs if kind == FLOOR for t in taps]
        print(compare(real, floor, opts.rounds), flush=True)
    if opts.json:
        Path(opts.json).write_text(
            json.dumps(
                [
                    {
                        "kind": kind,
                        # asdict() would turn the Counter's items into keys.
                        "report": {**asdict(report), "denials": dict(report.denials)},
                        "taps": [asdict(t) for t in taps],
                    }
                    for kind, report, taps in runs
                ],
                default=str,
                indent=1,
            )
        )
    if opts.keep_db:
        print(f"database kept: {opts.database_url}")
    reports = [report for _, report, _ in runs]
    failed = any(r.failures or (r.outage and r.outage.failures) for r in reports)
    wrong = any(r.applied is not None and r.applied["exactly_once"] is not True for r in reports)
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
