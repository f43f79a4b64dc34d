"""Revocation latency: from the commit of a revocation to every connected bank deciding on it.

With ``--banks`` real bank workers connected to a real Daphne on PostgreSQL (as in
``bench/tap_to_unlock.py``: pty board emulators, real journals and WebSockets, each worker
holding its signed access snapshot), a Django child process revokes ``--revocations``
badges one after the other through the real actions, alternating
``access.actions.revoke_badge`` and ``access.actions.offboard_employee``. For each, the time
is taken right after its transaction commits (the first ``on_commit`` hook) and again in
every worker right after it took in the delta that carries it (the worker's own decision for
that UID is then ``badge_revoked`` or ``employee_offboarded``). The latency of a revocation is
the last bank's time minus the commit; the next revocation starts ``--gap`` seconds after
every bank has it. Goal: p99 ≤ 1 s (DESIGN §5, "Revocation is a delta pushed to every
connected bank within a second")::

    .venv/bin/python -m bench.revocation                      # 50 banks, 100 revocations, idle
    .venv/bin/python -m bench.revocation --banks 10 --revocations 20 --rate 10

With ``--rate`` the banks also see badge taps (as in tap_to_unlock) while it runs. Every
monotonic time is ``time.monotonic()``, one clock for every process on a Linux machine.

This module does not load Django (the revocations run in a child process), so ``main`` can
be called from inside another Django process (the test suite's smoke test does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from access import core  # noqa: E402
from bench.tap_to_unlock import (  # noqa: E402
    DEFAULT_REDIS_URL,
    READY_TIMEOUT,
    SETUP_TIMEOUT,
    STOP_TIMEOUT,
    BankPlan,
    EmulatedSite,
    Server,
    _tapper,
    database_name,
    drop_database,
    percentile,
    plans_for,
    prepare,
    schedule,
    start_server,
    wait_until,
)

log = logging.getLogger("bench.revocation")

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lockerhub_bench_revoke"
GOAL_P99_MS = 1000.0
REVOKE, OFFBOARD = "revoke", "offboard"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.revocation``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.revocation",
        description="Time from a revocation's commit to every connected bank deciding on it.",
    )
    parser.add_argument("--banks", type=int, default=50, help="connected banks (default 50)")
    parser.add_argument(
        "--revocations", type=int, default=100, help="revocations, one at a time (default 100)"
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=0.2,
        help="seconds between one revocation reaching every bank and the next (default 0.2)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds a revocation may take to reach every bank before it counts as missed "
        "(default 15)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="badge taps per second at the banks meanwhile, all together (default 0: idle)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=min(4, max(2, os.cpu_count() or 2)),
        help="load processes hosting the banks (default: cores, 2 to 4)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="Daphne processes, banks spread over them (default 1)",
    )
    parser.add_argument("--poll-hz", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--person-delay", type=float, default=0.15, help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL URL; its database is dropped and made afresh (default {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"default {DEFAULT_REDIS_URL}"
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind")
    parser.add_argument("--json", metavar="FILE", help="also write every revocation to FILE")
    parser.add_argument("--log-dir", metavar="DIR", help="keep Daphne's log in DIR")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


@dataclass
class Revocation:
    """One revocation and when each bank had it (monotonic)."""

    how: str  # "revoke" (revoke_badge) or "offboard" (offboard_employee)
    uid: str
    committed: float = math.nan
    seen: dict[str, float] = field(default_factory=dict)  # bank code -> applied at

    def latency(self, banks: int) -> float | None:
        """Commit to the last bank, in seconds (None unless every bank has it)."""
        if len(self.seen) < banks:
            return None
        return max(self.seen.values()) - self.committed

    def first(self) -> float | None:
        return min(self.seen.values()) - self.committed if self.seen else None


# -- the banks ------------------------------------------------------------------------------------


class Watcher:
    """Called after each snapshot or delta a worker takes in: reports each target UID the
    worker now decides as revoked, once per worker."""

    def __init__(self, targets: list[str], current: Any, queue: Any) -> None:
        self.targets = targets
        self.current = current  # shared index: targets up to it may have been revoked
        self.queue = queue
        self.seen: dict[str, set[str]] = {}  # bank -> UIDs reported

    def __call__(self, worker: Any) -> None:
        at = time.monotonic()
        snapshot = worker.state.snapshot
        seen = self.seen.setdefault(worker.bank, set())
        for uid in self.targets[: self.current.value + 1]:
            if uid in seen:
                continue
            decision = core.decide(snapshot, [], time.time(), uid)
            if decision.reason in core.MISUSE:
                seen.add(uid)
                self.queue.put(("seen", uid, worker.bank, at))


async def _host(
    plans: list[BankPlan],
    opts: argparse.Namespace,
    targets: list[str],
    current: Any,
    queue: Any,
    stop: Any,
) -> None:
    journal_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-journals-"))
    site = EmulatedSite(plans, opts, journal_dir, on_access=Watcher(targets, current, queue))
    halt = threading.Event()
    runs: list[asyncio.Task[None]] = []
    tapper = None
    try:
        runs = site.start(asyncio.get_running_loop())
        await wait_until(site.ready, runs, READY_TIMEOUT, "banks not connected with a snapshot")
        queue.put(("ready", os.getpid(), None))
        if opts.rate:
            taps = schedule(plans, opts, time.monotonic())
            tapper = asyncio.create_task(asyncio.to_thread(_tapper, site, taps, halt))
        limit = len(targets) * (opts.timeout + opts.gap + 5) + SETUP_TIMEOUT
        await asyncio.to_thread(stop.wait, limit)
    finally:
        halt.set()
        if tapper is not None:
            await tapper
        site.stop()
        if runs:
            await asyncio.wait(runs, timeout=STOP_TIMEOUT)
        site.close()
        shutil.rmtree(journal_dir, ignore_errors=True)


def load_process(plans: list[BankPlan], opts: argparse.Namespace, targets: list[str], current: Any, queue: Any, stop: Any) -> None:  # fmt: skip
    """Entry point of one load process: host ``plans`` until ``stop``, reporting what it sees."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        asyncio.run(_host(plans, opts, targets, current, queue, stop))
    except BaseException as exc:
        queue.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(("done", os.getpid(), None))


# -- the revoking side (a Django child process) ---------------------------------------------------


def revoke_forever() -> None:
    """Read ``revoke UID`` / ``offboard UID`` lines; answer each with the commit time (JSON)."""
    import django

    django.setup()
    from django.db import transaction

    from access.actions import offboard_employee, revoke_badge
    from access.models import Badge
    from lockerhub.audit import SYSTEM

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        how, uid = line.split()
        badge = Badge.objects.select_related("employee").get(uid=uid, status=Badge.Status.ACTIVE)
        marks: list[float] = []
        with transaction.atomic():
            # The first hook after commit: the moment the revocation is the truth.
            transaction.on_commit(lambda marks=marks: marks.append(time.monotonic()))
            if how == OFFBOARD:
                offboard_employee(badge.employee, actor=SYSTEM)
            else:
                revoke_badge(badge, actor=SYSTEM, reason="revocation benchmark")
        print(json.dumps({"uid": uid, "committed": marks[0]}), flush=True)


class Revoker:
    """The Django child process that revokes, one line at a time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.revocation", "--child"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._read(SETUP_TIMEOUT)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.process.stdout.readline()))
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            raise RuntimeError(f"the revoking process did not answer (exit {self.process.poll()})")
        return json.loads(answer[0])

    def revoke(self, how: str, uid: str) -> float:
        """Revoke ``uid`` (``how``: revoke or offboard); returns the monotonic commit time."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{how} {uid}\n")
        self.process.stdin.flush()
        return float(self._read(SETUP_TIMEOUT)["committed"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the run ------------------------------------------------------------------------------------


def targets_of(world: dict[str, Any], count: int) -> list[tuple[str, str]]:
    """``count`` badges of different people, spread over the banks, revoked and offboarded
    in turn."""
    columns = [bank["uids"] for bank in world["banks"]]
    uids = [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]
    return [(REVOKE if n % 2 == 0 else OFFBOARD, uid) for n, uid in enumerate(uids[:count])]


def run(opts: argparse.Namespace) -> tuple[list[Revocation], dict[str, Any]]:
    """Set up, revoke one after the other, tear down; every revocation and the setting."""
    people = max(4, math.ceil((opts.revocations + 1) / opts.banks))
    work_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-revoke-"))
    servers: list[Server] = []
    revoker: Revoker | None = None
    processes: list[multiprocessing.process.BaseProcess] = []
    stop = None
    try:
        env, public_key, world = prepare(opts, work_dir, people)
        log_dir = Path(opts.log_dir) if opts.log_dir else work_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        servers = [start_server(env, log_dir) for _ in range(opts.servers)]
        plans = plans_for(world, servers, public_key)
        revocations = [Revocation(how, uid) for how, uid in targets_of(world, opts.revocations)]
        targets = [r.uid for r in revocations]
        context = multiprocessing.get_context("spawn")
        queue, stop, current = context.Queue(), context.Event(), context.Value("i", -1)
        for p in range(opts.processes):
            process = context.Process(
                target=load_process,
                args=(plans[p :: opts.processes], opts, targets, current, queue, stop),
                daemon=True,
            )
            process.start()
            processes.append(process)
        ready = 0
        while ready < len(processes):
            what, pid, detail = queue.get(timeout=READY_TIMEOUT + SETUP_TIMEOUT)
            if what != "ready":
                raise RuntimeError(f"load process {pid}: {detail}")
            ready += 1
        revoker = Revoker(env)
        by_uid = {r.uid: r for r in revocations}
        for i, revocation in enumerate(revocations):
            current.value = i
            revocation.committed = revoker.revoke(revocation.how, revocation.uid)
            deadline = time.monotonic() + opts.timeout
            while len(revocation.seen) < opts.banks and time.monotonic() < deadline:
                try:
                    what, *detail = queue.get(timeout=max(0.01, deadline - time.monotonic()))
                except Empty:
                    break
                if what == "error":
                    raise RuntimeError(f"load process {detail[0]}: {detail[1]}")
                if what == "seen":
                    uid, bank, at = detail
                    by_uid[uid].seen.setdefault(bank, at)
            if len(revocation.seen) < opts.banks:
                log.warning(
                    "%s of %s reached %d of %d banks within %g s",
                    revocation.how, revocation.uid, len(revocation.seen), opts.banks, opts.timeout,
                )  # fmt: skip
            time.sleep(opts.gap)
        setting = {
            "banks": opts.banks,
            "servers": opts.servers,
            "rate": opts.rate,
            "cores": os.cpu_count(),
        }
        return revocations, setting
    finally:
        if revoker is not None:
            revoker.close()
        if stop is not None:
            stop.set()
        for process in processes:
            process.join(timeout=STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        for server in servers:
            server.stop()
        if not opts.keep_db:
            drop_database(opts.database_url)
        shutil.rmtree(work_dir, ignore_errors=True)


def report(revocations: list[Revocation], setting: dict[str, Any]) -> tuple[str, bool]:
    """The printout, and whether every revocation reached every bank."""
    banks = setting["banks"]
    latencies = [x * 1000 for r in revocations if (x := r.latency(banks)) is not None]
    firsts = [x * 1000 for r in revocations if (x := r.first()) is not None]

    def figures(values: list[float]) -> str:
        return (
            f"{percentile(values, 50):.0f} / {percentile(values, 99):.0f} / "
            f"{max(values) if values else math.nan:.0f}"
        )

    every = len(latencies) == len(revocations)
    p99 = percentile(latencies, 99)
    rows = [
        ("cores", f"{setting['cores']}"),
        ("banks connected / servers", f"{banks} / {setting['servers']}"),
        ("background taps/s", f"{setting['rate']:g}"),
        (
            "revocations",
            f"{len(revocations)} ({sum(r.how == REVOKE for r in revocations)} badges revoked, "
            f"{sum(r.how == OFFBOARD for r in revocations)} people offboarded)",
        ),
        ("reached every bank", f"{len(latencies)} of {len(revocations)}"),
        ("latency p50 ms", f"{percentile(latencies, 50):.0f}"),
        ("latency p99 ms", f"{p99:.0f}"),
        ("latency max ms", f"{max(latencies) if latencies else math.nan:.0f}"),
        ("  first bank p50/p99/max ms", figures(firsts)),
    ]
    for how, label in ((REVOKE, "badge revoked"), (OFFBOARD, "offboarded")):
        values = [
            x * 1000 for r in revocations if r.how == how and (x := r.latency(banks)) is not None
        ]
        rows.append((f"  {label} p50/p99/max ms", figures(values)))
    verdict = "met" if every and p99 <= GOAL_P99_MS else "NOT met"
    rows.append((f"goal p99 <= {GOAL_P99_MS:.0f} ms at every bank", verdict))
    width = max(len(k) for k, _ in rows)
    lines = ["revocation latency: commit to applied at every bank", "-" * (width + 28)]
    return "\n".join(lines + [f"{k:<{width}}  {v}" for k, v in rows]), every


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit status 1 if a revocation missed a bank."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.child:
        revoke_forever()
        return 0
    if not 1 <= opts.banks <= 1000 or not 1 <= opts.revocations <= 10000:
        parser.error("--banks must be 1-1000 and --revocations 1-10000")
    if not 1 <= opts.servers <= 16:
        parser.error("--servers must be 1-16")
    if not 0 <= opts.rate <= 5000 or not 0 < opts.timeout <= 600 or not 0 <= opts.gap <= 60:
        parser.error("--rate must be 0-5000, --timeout 0-600 s and --gap 0-60 s")
    try:
        database_name(opts.database_url)
    except ValueError as exc:
        parser.error(str(exc))
    opts.processes = max(1, min(opts.processes, opts.banks))
    # What tap_to_unlock.schedule reads, for the background taps.
    opts.warmup, opts.outage = 0.0, 0.0
    opts.duration = opts.revocations * (opts.timeout + opts.gap + 5)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info(
        "%d banks, %d revocations, %g background taps/s", opts.banks, opts.revocations, opts.rate
    )
    revocations, setting = run(opts)
    text, every = report(revocations, setting)
    print(text, flush=True)
    if opts.json:
        Path(opts.json).write_text(
            json.dumps({"setting": setting, "revocations": [asdict(r) for r in revocations]})
        )
    return 0 if every else 1


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    sys.exit(main())
