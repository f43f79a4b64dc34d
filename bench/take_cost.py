"""What one take and one return cost the server, without the network: CPU, statements, PostgreSQL.

The tap-to-unlock benchmark (``bench/tap_to_unlock.py``) measures what a person feels at the
bank, with every process of the system on one machine. This one isolates the server's own
work: it feeds the device consumer's ``apply_event`` (the exact code a bank worker's messages
run through) the four events of a take and the four of a return — the tap the bank decided,
door open, presence, door closed — in this process, and reports per event type the Python
CPU, the wall time, the SQL statements and the PostgreSQL backend's CPU::

    .venv/bin/python -m bench.take_cost                    # 200 take+return cycles
    .venv/bin/python -m bench.take_cost --cycles 50 --profile 25

It makes (and drops) its own PostgreSQL database, like the tap-to-unlock benchmark; with
``--database-url sqlite`` it runs on a temporary SQLite file instead. Live events (the
channel layer) are collected but not sent, as the consumer sends them after its reply.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tap_to_unlock import (  # noqa: E402
    DEFAULT_REDIS_URL,
    cpu_seconds,
    drop_database,
    recreate_database,
    run_python,
    server_env,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lockerhub_bench_cost"
EVENTS = ("tap", "door_open", "presence", "door_closed")


def _measure(opts: argparse.Namespace) -> dict[str, Any]:
    """Run inside a process whose environment names the benchmark's database."""
    import django

    django.setup()
    from django.db import connection
    from django.utils.timezone import now as django_now

    from bench.tap_world import build_world
    from devices.consumers import DeviceConsumer
    from devices.models import LockerBank
    from devices.protocol import parse

    world = build_world(1, 2)
    bank_data = world["banks"][0]
    consumer = DeviceConsumer()
    consumer.bank = LockerBank.objects.select_related("site").get(code=bank_data["code"])
    slots = {number: present for number, _, _, present in bank_data["slots"]}
    uid = bank_data["uids"][0]
    seq = 0
    statements = 0

    def count(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    def send(kind: str, **body: Any) -> list[dict[str, Any]]:
        nonlocal seq
        seq += 1
        message = parse(json.dumps({"type": kind, "seq": seq, **body}))
        replies, _outbox = consumer.apply_event(message)
        return replies

    connection.ensure_connection()
    backend_pid = (
        connection.connection.info.backend_pid if connection.vendor == "postgresql" else None
    )
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, list[int]] = defaultdict(list)
    pg: dict[str, float] = defaultdict(float)
    profiler = cProfile.Profile() if opts.profile else None

    def step(name: str, measured: bool, action: Callable[[], Any]) -> Any:
        nonlocal statements
        statements = 0
        pg_before = cpu_seconds(backend_pid) if backend_pid else 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        if profiler and measured:
            profiler.enable()
        with connection.execute_wrapper(count):
            result = action()
        if profiler and measured:
            profiler.disable()
        c1, w1 = time.process_time(), time.perf_counter()
        if measured:
            cpu[name].append((c1 - c0) * 1000)
            wall[name].append((w1 - w0) * 1000)
            queries[name].append(statements)
            if backend_pid:
                pg[name] += (cpu_seconds(backend_pid) - pg_before) * 1000
        return result

    send("snapshot", slots=[
        {"slot": n, "door_open": False, "present": p, "charge_state": "charged" if p else "empty"}
        for n, p in slots.items()
    ])  # fmt: skip
    from access import core
    from access.snapshot_builder import build_snapshot, slot_states

    cycles = opts.warmup + opts.cycles
    for i in range(cycles):
        measured = i >= opts.warmup
        for purpose in ("take", "return"):
            # What the bank decides from its snapshot (not counted: that is the bank's work).
            decision = core.decide(
                build_snapshot(consumer.bank, now=django_now()),
                slot_states(consumer.bank),
                time.time(),
                uid,
            )
            if not decision.granted or decision.purpose != purpose:
                raise RuntimeError(f"{purpose} refused: {decision}")
            number = decision.slot
            tap = {
                "uid": uid,
                "granted": True,
                "reason": str(decision.reason),
                "purpose": str(decision.purpose),
                "slot": number,
                "asset": decision.asset,
                "checkout": decision.checkout,
                "holder": decision.holder,
                "version": 1,
                "due_at": decision.due_at,
                "shift_end": decision.shift_end,
            }
            step("tap", measured, partial(send, "tap", **tap))
            slots[number] = purpose == "return"
            for name, kind, body in (
                ("door_open", "door", {"slot": number, "open": True}),
                ("presence", "presence", {"slot": number, "present": slots[number]}),
                ("door_closed", "door", {"slot": number, "open": False}),
            ):
                step(name, measured, partial(send, kind, **body))

    taps = 2 * opts.cycles
    report: dict[str, Any] = {"vendor": connection.vendor, "taps": taps, "events": {}}
    for name in EVENTS:
        report["events"][name] = {
            "cpu_ms": sum(cpu[name]) / taps,
            "wall_ms_p50": statistics.median(wall[name]),
            "statements": sum(queries[name]) / taps,
            "postgresql_cpu_ms": pg[name] / taps if backend_pid else None,
        }
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(opts.profile)
        stats.sort_stats("tottime").print_stats(opts.profile)
    return report


def print_report(report: dict[str, Any]) -> None:
    """One row per event, then the sum: what one tap costs the server."""
    print(f"server cost per tap ({report['vendor']}, {report['taps']} taps, take and return alike)")
    print(f"{'event':<16}{'CPU ms':>9}{'wall p50 ms':>13}{'statements':>12}{'PostgreSQL ms':>15}")
    total = defaultdict(float)
    for name, figures in report["events"].items():
        pg = figures["postgresql_cpu_ms"]
        print(
            f"{name:<16}{figures['cpu_ms']:>9.2f}{figures['wall_ms_p50']:>13.2f}"
            f"{figures['statements']:>12.1f}{'' if pg is None else f'{pg:.2f}':>15}"
        )
        for key in ("cpu_ms", "wall_ms_p50", "statements"):
            total[key] += figures[key]
        total["pg"] += pg or 0.0
    pg_total = f"{total['pg']:.2f}" if report["vendor"] == "postgresql" else ""
    print(
        f"{'per tap':<16}{total['cpu_ms']:>9.2f}{total['wall_ms_p50']:>13.2f}"
        f"{total['statements']:>12.1f}{pg_total:>15}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.take_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--cycles", type=int, default=200, help="measured take+return cycles (default 200)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="cycles not counted (default 20)")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"a PostgreSQL URL whose database is dropped and made again (default "
        f"{DEFAULT_DATABASE_URL}), or 'sqlite'",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="print the N costliest functions (cProfile) to stderr",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Make the database, measure in a child process that loads Django, print the figures."""
    opts = build_parser().parse_args(argv)
    if opts.child:
        report = _measure(opts)
        Path(opts.child).write_text(json.dumps(report))
        return 0
    sqlite = opts.database_url == "sqlite"
    with tempfile.TemporaryDirectory(prefix="lockerhub-take-cost-") as work:
        if sqlite:
            env = server_env("", "", Path(work))
            env.pop("DATABASE_URL")
            env.pop("REDIS_URL")
        else:
            recreate_database(opts.database_url)
            env = server_env(opts.database_url, DEFAULT_REDIS_URL, Path(work))
        try:
            run_python(["manage.py", "migrate", "--noinput"], env, "migrate")
            out = Path(work) / "report.json"
            args = [*(argv if argv is not None else sys.argv[1:]), "--child", str(out)]
            done = subprocess.run(
                [sys.executable, "-m", "bench.take_cost", *args], cwd=ROOT, env=env
            )
            if done.returncode != 0:
                return done.returncode
            report = json.loads(out.read_text())
        finally:
            if not sqlite:
                drop_database(opts.database_url)
    print_report(report)
    if opts.json:
        Path(opts.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    sys.exit(main())
