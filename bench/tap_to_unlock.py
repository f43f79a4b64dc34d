"""Tap-to-unlock latency: N emulated banks on real WebSockets against Daphne, PostgreSQL and Redis.

Measures, for every badge tap, the time from the bank worker receiving the UID (the moment
:meth:`BankWorker.submit_badge` is called, as the badge reader does) to the unlock frame
arriving at the emulated KR-CU16 board (``KerongBoardEmulator.unlock_log``). Both are
``time.monotonic()``, which on Linux is one clock for every process on the machine::

    .venv/bin/python -m bench.tap_to_unlock                      # 50 banks, 100 taps/s, 30 s
    .venv/bin/python -m bench.tap_to_unlock --banks 10 --rate 20 --duration 20

What runs: a fresh PostgreSQL database (dropped and made again each run, dropped at the end
unless ``--keep-db``), migrated and filled by ``bench/tap_world.py``; ``--servers`` Daphne processes
on loopback; ``--processes`` load processes, each hosting its share of banks as a pty board
emulator plus the real :class:`BankWorker` (real journal, real serial driver, real WebSocket).
An emulated person at every bank reacts to an unlock: takes the device out (or puts it back)
and closes the door, so the slots recycle. Each employee's taps alternate take and return.

The load is open-loop: taps go out on a fixed schedule (``--rate`` in total, spread evenly
over the banks) whether or not earlier ones have finished. Taps during ``--warmup`` are not
counted. A tap that is granted but sees no unlock within ``--fail-after`` seconds, or gets no
answer at all, is a failure; a denial is counted apart with its reason.

This module does not load Django: the data is built in a child process, so ``main`` can be
called from inside another Django process (the test suite's smoke test does).
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/tap_to_unlock.py
    sys.path.insert(0, str(ROOT))

from devices.drivers.base import open_lock_bus  # noqa: E402
from devices.emulators.kerong import KerongBoardEmulator  # noqa: E402
from devices.worker import BankWorker  # noqa: E402

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
SERVER_APPS = {"lockerhub": "lockerhub.asgi:application", "floor": "bench.floor_server:application"}


# -- options and plan ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.tap_to_unlock``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.tap_to_unlock",
        description="Badge tap to unlock frame latency with N emulated banks on real WebSockets.",
    )
    parser.add_argument("--banks", type=int, default=50, help="emulated banks (default 50)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="taps per second, all banks (default 100)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="measured seconds after warm-up (default 30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of load not counted (default 3)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=min(4, max(2, os.cpu_count() or 2)),
        help="load processes hosting the banks (default: cores, 2 to 4)",
    )
    parser.add_argument("--servers", type=int, default=1, help="Daphne processes (default 1)")
    parser.add_argument(
        "--server-app",
        choices=sorted(SERVER_APPS),
        default="lockerhub",
        help="lockerhub (default), or floor: the protocol answered from memory by Daphne and "
        "Channels alone (bench/floor_server.py), to see what the machine can do without the "
        "server's own work",
    )
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
        "--keep-db", action="store_true", help="leave the database behind for inspection"
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


@dataclass(frozen=True)
class BankPlan:
    """One emulated bank and the taps it will see."""

    index: int
    code: str
    token: str
    server: str
    slots: list[tuple[int, int, int, bool]]  # number, board, lock_index, present
    uids: list[str]


@dataclass
class Tap:
    """One scheduled badge tap and what became of it (all times ``time.monotonic()``)."""

    bank: str
    uid: str
    scheduled: float
    measured: bool
    submitted: float | None = None
    journaled: float | None = None
    seq: int | None = None
    answered: float | None = None
    granted: bool | None = None
    reason: str | None = None
    slot: int | None = None
    unlocked: float | None = None
    error: str | None = None

    @property
    def latency(self) -> float | None:
        if self.unlocked is None or self.submitted is None:
            return None
        return self.unlocked - self.submitted


# -- the load process ---------------------------------------------------------------------------


class MeasuredWorker(BankWorker):
    """The real worker, plus a note of when each ``tap_result`` arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: dict[int, tuple[float, bool, str, int | None]] = {}

    async def _dispatch(self, session: Any, message: dict[str, Any]) -> None:
        if message["type"] == "tap_result" and isinstance(message.get("seq"), int):
            slot = message.get("slot")
            self.results[message["seq"]] = (
                time.monotonic(),
                bool(message.get("granted")),
                str(message.get("reason")),
                slot if isinstance(slot, int) else None,
            )
        await super()._dispatch(session, message)


class EmulatedSite:
    """The banks of one load process: emulators, workers and the people standing at them."""

    def __init__(self, plans: list[BankPlan], opts: argparse.Namespace, journal_dir: Path):
        self.plans = plans
        self.opts = opts
        self.emulators: dict[str, KerongBoardEmulator] = {}
        self.buses: dict[str, Any] = {}
        self.workers: dict[str, MeasuredWorker] = {}
        self.unlocks: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.journal_dir = journal_dir

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        self.loop = loop
        tasks = []
        for plan in self.plans:
            emulator = KerongBoardEmulator(
                sorted({board for _, board, _, _ in plan.slots}),
                on_unlock=lambda board, lock, code=plan.code: self._on_unlock(code, board, lock),
            )
            for _, board, lock_index, present in plan.slots:
                emulator.set_present(board, lock_index, present)
            emulator.start()
            self.emulators[plan.code] = emulator
            self.buses[plan.code] = open_lock_bus("kerong-cu16", emulator.port)
            worker = MeasuredWorker(
                plan.server,
                plan.code,
                plan.token,
                self.buses[plan.code],
                journal_path=self.journal_dir / f"{plan.code}.sqlite3",
                poll_hz=self.opts.poll_hz,
            )
            self.workers[plan.code] = worker
            tasks.append(loop.create_task(worker.run(), name=f"worker {plan.code}"))
        return tasks

    def ready(self) -> bool:
        """Every worker has its config and the server has applied its snapshot."""
        return all(w.slots and not w.journal.pending_messages() for w in self.workers.values())

    def _on_unlock(self, code: str, board: int, lock_index: int) -> None:
        # Called on the emulator thread right after the frame was logged; the n-th call is
        # the n-th entry of unlock_log.
        self.unlocks[code].append((board, lock_index))
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

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def close(self) -> None:
        for bus in self.buses.values():
            bus.close()
        for emulator in self.emulators.values():
            emulator.stop()


def schedule(plans: list[BankPlan], opts: argparse.Namespace, start: float) -> list[Tap]:
    """Every tap of ``plans``: bank i of N taps at start + i/rate + k·N/rate, people in turn."""
    interval = opts.banks / opts.rate
    end = start + opts.warmup + opts.duration
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
            tap.seq = site.workers[tap.bank].submit_badge(tap.uid)
        except Exception as exc:
            tap.error = f"{type(exc).__name__}: {exc}"
        tap.journaled = time.monotonic()

    for tap in taps:
        delay = tap.scheduled - time.monotonic()
        if delay > 0 and halt.wait(delay):
            break
        pool.submit(present, tap)
    pool.shutdown(wait=True)


def _resolve(site: EmulatedSite, taps: list[Tap]) -> None:
    """Join taps with their answers (by seq) and with the unlocks of their slots (in order)."""
    by_bank: dict[str, list[Tap]] = defaultdict(list)
    for tap in taps:
        by_bank[tap.bank].append(tap)
    for plan in site.plans:
        worker, emulator = site.workers[plan.code], site.emulators[plan.code]
        slot_of = {(board, lock): number for number, board, lock, _ in plan.slots}
        waiting: dict[int, list[Tap]] = defaultdict(list)
        for tap in sorted(by_bank[plan.code], key=lambda t: t.journaled or math.inf):
            result = worker.results.get(tap.seq) if tap.seq is not None else None
            if result is None:
                continue
            tap.answered, tap.granted, tap.reason, tap.slot = result
            if tap.granted and tap.slot is not None:
                waiting[tap.slot].append(tap)
        for slot_taps in waiting.values():
            slot_taps.sort(key=lambda t: t.answered or 0.0)
        logged = emulator.unlock_log
        for (at, _, _), (board, lock) in zip(logged, site.unlocks[plan.code], strict=False):
            candidates = waiting.get(slot_of.get((board, lock), -1), [])
            # The unlock serves the oldest granted tap of its slot answered before it.
            for i, tap in enumerate(candidates):
                if tap.answered is not None and tap.answered <= at:
                    tap.unlocked = at
                    del candidates[i]
                    break


async def _host(
    plans: list[BankPlan],
    opts: argparse.Namespace,
    ready: Any,
    go: Any,
    start_at: Any,
) -> tuple[list[Tap], float]:
    """Run the banks of ``plans`` through the load; returns the taps and the CPU seconds spent."""
    loop = asyncio.get_running_loop()
    journal_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-journals-"))
    site = EmulatedSite(plans, opts, journal_dir)
    halt = threading.Event()
    runs: list[asyncio.Task[None]] = []
    try:
        runs = site.start(loop)
        deadline = time.monotonic() + READY_TIMEOUT
        while not site.ready():
            failed = [t for t in runs if t.done()]
            if failed:
                raise RuntimeError(f"{failed[0].get_name()} ended: {failed[0].exception()!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"banks not connected within {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)
        ready.put(("ready", os.getpid(), None))
        if not await asyncio.to_thread(go.wait, READY_TIMEOUT):
            raise RuntimeError("no start signal")
        cpu_before = time.process_time()
        taps = schedule(plans, opts, start_at.value)
        await asyncio.to_thread(_tapper, site, taps, halt)
        # Let the last taps finish (or fail) before the workers stop.
        await asyncio.sleep(opts.fail_after + 0.5)
        cpu = time.process_time() - cpu_before
        _resolve(site, taps)
        return taps, cpu
    finally:
        halt.set()
        site.stop()
        if runs:
            await asyncio.wait(runs, timeout=STOP_TIMEOUT)
        site.close()
        shutil.rmtree(journal_dir, ignore_errors=True)


def load_process(plans: list[BankPlan], opts: argparse.Namespace, queue: Any, go: Any, start_at: Any) -> None:  # fmt: skip
    """Entry point of one load process: host ``plans`` and send every tap back on ``queue``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        taps, cpu = asyncio.run(_host(plans, opts, queue, go, start_at))
    except BaseException as exc:
        queue.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(("taps", os.getpid(), {"taps": [asdict(t) for t in taps], "cpu": cpu}))


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


def server_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
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
    return env


def run_python(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def start_server(env: dict[str, str], log_dir: Path, app: str = SERVER_APPS["lockerhub"]) -> Server:
    port = free_port()
    log_file = open(log_dir / f"daphne-{port}.log", "w")  # noqa: SIM115 - closed by Server.stop
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
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
class Report:
    """The figures of one run."""

    banks: int
    target_rate: float
    duration: float
    processes: int
    servers: int
    cores: int
    fail_after: float
    server_app: str = "lockerhub"
    taps_sent: int = 0
    achieved_rate: float = 0.0
    unlocks: int = 0
    unlock_rate: float = 0.0
    failures: int = 0
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
    failure_examples: list[str] = field(default_factory=list)

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
            ("load processes / servers", f"{self.processes} / {self.servers} ({self.server_app})"),
            ("target taps/s", f"{self.target_rate:g}"),
            ("taps sent (measured)", f"{self.taps_sent} in {self.duration:g} s"),
            ("achieved taps/s", f"{self.achieved_rate:.1f}"),
            ("unlocks", f"{self.unlocks} ({self.unlock_rate:.1f}/s sustained on time)"),
            ("failures", f"{self.failures} (no unlock within {self.fail_after:g} s)"),
            ("denials", f"{denied} ({reasons})"),
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
        width = max(len(k) for k, _ in rows)
        lines = ["tap-to-unlock benchmark", "-" * (width + 24)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        lines += [f"failure: {text}" for text in self.failure_examples]
        return "\n".join(lines)


STAGES = {
    # The UID is journaled (one durable SQLite commit) before it is sent.
    "worker journal": ("submitted", "journaled"),
    # Send, the server's decision, and the tap_result back.
    "server round trip": ("journaled", "answered"),
    # The unlock command: claimed in the journal, then the frame on the serial bus.
    "command to frame": ("answered", "unlocked"),
}


def summarise(taps: list[Tap], opts: argparse.Namespace, servers: list[Server]) -> Report:
    measured = [t for t in taps if t.measured]
    report = Report(
        banks=opts.banks,
        target_rate=opts.rate,
        duration=opts.duration,
        processes=opts.processes,
        servers=opts.servers,
        cores=os.cpu_count() or 0,
        fail_after=opts.fail_after,
        server_app=opts.server_app,
    )
    sent = [t for t in measured if t.submitted is not None]
    report.taps_sent = len(sent)
    if len(sent) > 1:
        span = max(t.submitted for t in sent) - min(t.submitted for t in sent)
        report.achieved_rate = (len(sent) - 1) / span if span > 0 else 0.0
    latencies = []
    for tap in sent:
        latency = tap.latency
        if tap.granted is False:
            report.denials[tap.reason or "?"] += 1
            continue
        if latency is not None:
            latencies.append(latency)
        if latency is None or latency > opts.fail_after:
            report.failures += 1
            if len(report.failure_examples) < 5:
                if tap.error:
                    what = tap.error
                elif tap.answered is None:
                    what = "no answer"
                elif latency is None:
                    what = f"no unlock of slot {tap.slot}"
                else:
                    what = f"unlock after {latency * 1000:.0f} ms"
                report.failure_examples.append(f"{tap.bank} {tap.uid} seq {tap.seq}: {what}")
    report.unlocks = len(latencies)
    report.unlock_rate = sum(1 for x in latencies if x <= opts.fail_after) / opts.duration
    ms = [x * 1000 for x in latencies]
    report.latency_ms = {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else math.nan,
        "mean": statistics.fmean(ms) if ms else math.nan,
    }
    done = [t for t in sent if t.unlocked is not None and t.answered is not None]
    for stage, (a, b) in STAGES.items():
        values = [(getattr(t, b) - getattr(t, a)) * 1000 for t in done if getattr(t, a) is not None]
        report.stages_ms[stage] = {"p50": percentile(values, 50), "p99": percentile(values, 99)}
    report.send_lag_p99_ms = percentile([(t.submitted - t.scheduled) * 1000 for t in sent], 99)
    report.server_peak_rss_mib = [(kib or 0) / 1024 for kib in (s.peak_rss_kib() for s in servers)]
    return report


# -- the run ------------------------------------------------------------------------------------


def check_options(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    if not 1 <= opts.banks <= 1000:
        parser.error("--banks must be 1 to 1000")
    if not 0 < opts.rate <= 5000:
        parser.error("--rate must be above 0 and at most 5000")
    if not 0 < opts.duration <= 3600 or not 0 <= opts.warmup <= 600:
        parser.error("--duration must be 0-3600 s and --warmup 0-600 s")
    if not 1 <= opts.servers <= 16 or not 1 <= opts.processes <= 64:
        parser.error("--servers must be 1-16 and --processes 1-64")
    if opts.poll_hz < 5:
        parser.error("--poll-hz must be at least 5")
    try:
        database_name(opts.database_url)
    except ValueError as exc:
        parser.error(str(exc))
    opts.processes = min(opts.processes, opts.banks)


def run(opts: argparse.Namespace) -> tuple[Report, list[Tap]]:
    """Set everything up, run the load, tear everything down; returns the figures and taps."""
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
        ensure_redis(opts.redis_url)
        recreate_database(opts.database_url)
        database_made = True
        env = server_env(opts.database_url, opts.redis_url, work_dir)
        run_python(["manage.py", "migrate", "--noinput"], env, "migrate")
        world_file = work_dir / "world.json"
        run_python(
            ["-m", "bench.tap_world", "--banks", str(opts.banks), "--employees", str(people),
             "--out", str(world_file)],
            env,
            "building the data",
        )  # fmt: skip
        world = json.loads(world_file.read_text())
        if opts.server_app == "floor":
            env["LOCKERHUB_BENCH_WORLD"] = str(world_file)  # removed with work_dir
        else:
            world_file.unlink()
        log_dir = Path(opts.log_dir) if opts.log_dir else work_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        app = SERVER_APPS[opts.server_app]
        servers = [start_server(env, log_dir, app) for _ in range(opts.servers)]
        plans = [
            BankPlan(
                index=i,
                code=bank["code"],
                token=bank["token"],
                server=servers[i % len(servers)].url,
                slots=[tuple(s) for s in bank["slots"]],
                uids=bank["uids"],
            )
            for i, bank in enumerate(world["banks"])
        ]
        context = multiprocessing.get_context("spawn")
        queue, go, start_at = context.Queue(), context.Event(), context.Value("d", 0.0)
        for p in range(opts.processes):
            share = plans[p :: opts.processes]
            process = context.Process(
                target=load_process, args=(share, opts, queue, go, start_at), daemon=True
            )
            process.start()
            processes.append(process)
        ready = 0
        while ready < len(processes):
            kind, pid, detail = queue.get(timeout=READY_TIMEOUT + SETUP_TIMEOUT)
            if kind != "ready":
                raise RuntimeError(f"load process {pid}: {detail}")
            ready += 1
        meter = CpuMeter(
            servers=[server.process.pid for server in servers], database_url=opts.database_url
        )
        meter.start()
        start_at.value = time.monotonic() + 0.5
        go.set()
        taps: list[Tap] = []
        load_cpu = 0.0
        waiting = len(processes)
        limit = opts.warmup + opts.duration + opts.fail_after + STOP_TIMEOUT + 30
        while waiting:
            kind, pid, detail = queue.get(timeout=limit)
            if kind == "error":
                raise RuntimeError(f"load process {pid}: {detail}")
            if kind == "taps":
                taps += [Tap(**t) for t in detail["taps"]]
                load_cpu += detail["cpu"]
                waiting -= 1
        meter.stop()
        report = summarise(taps, opts, servers)
        per_tap = 1000 / max(1, sum(1 for t in taps if t.submitted))
        report.server_cpu_ms_per_tap = meter.used["server"] * per_tap
        report.load_cpu_ms_per_tap = load_cpu * per_tap
        report.database_cpu_ms_per_tap = meter.used["database"] * per_tap
        report.machine_cpu_ms_per_tap = meter.used["machine"] * per_tap
        report.machine_busy_cores = meter.used["machine"] / meter.used["wall"]
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit status 1 if any tap failed."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    check_options(parser, opts)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info(
        "%d banks, %g taps/s for %g s (+%g s warm-up), %d load process(es), %d server(s)",
        opts.banks, opts.rate, opts.duration, opts.warmup, opts.processes, opts.servers,
    )  # fmt: skip
    report, taps = run(opts)
    print(report.table(), flush=True)
    if opts.json:
        Path(opts.json).write_text(
            json.dumps(
                {
                    # asdict() would turn the Counter's items into keys.
                    "report": {**asdict(report), "denials": dict(report.denials)},
                    "taps": [asdict(t) for t in taps],
                },
                default=str,
                indent=1,
            )
        )
    if opts.keep_db:
        print(f"database kept: {opts.database_url}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
