"""How big a bank's access snapshot gets, what it costs to build, and what a worker needs to hold it.

Builds a world of ``--badges`` badges (10,000 by default) and their holders in a fresh
PostgreSQL database, through the real actions (``bench/tap_world.py`` for the banks, slots,
devices and the first people; ``create_employee``, ``issue_badge``, ``create_access_rule``,
``create_shift``, ``assign_shifts`` for the rest; ``present_badge`` and the door and presence
readings for the open loans), then prints for one bank:

- the signed whole snapshot as sent (an ``access_snapshot`` message, built by
  ``devices.bank_feed.BankFeed`` exactly as the server builds it on a worker's hello), its
  size in bytes and its build time (goal: at most 1 MB);
- the size of the signed ``access_delta`` the same feed sends after one badge revoked, one
  badge issued and one person offboarded (goal: at most 2 KB each);
- how long the decision core takes on it (``access.core.decide`` for known UIDs);
- the peak RSS (VmHWM) of a real worker process (``python -m devices.worker`` on a pty
  board emulator) that starts from a journal holding that snapshot and the three deltas
  (every signature checked again on start), next to the same worker with an empty journal
  (goal: at most 60 MB)::

    .venv/bin/python -m bench.snapshot_size                  # 10,000 badges
    .venv/bin/python -m bench.snapshot_size --badges 1000 --json sizes.json

The world: ``--banks`` banks of 12 stocked slots at one site; one person in fifty holds a
device (an open loan at some bank); everyone else is in one of 20 departments, each with a
shift-bound rule for scanners at every bank (half of them also for PIN-protected tablets), on
one of three shifts (early, late, night; every day); one badge in five hundred has a PIN.
Every holder of a badge is in every bank's snapshot (a badge may be presented at any bank),
with the rules that hold at that bank.

This module does not load Django (the world is built in a child process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tap_to_unlock import (  # noqa: E402
    DEFAULT_REDIS_URL,
    database_name,
    drop_database,
    free_port,
    recreate_database,
    run_python,
    server_env,
    signing_key_pair,
)
from devices.emulators.kerong import KerongBoardEmulator  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lockerhub_bench_snapshot"
GOAL_SNAPSHOT_BYTES = 1_000_000
GOAL_DELTA_BYTES = 2_000
GOAL_WORKER_MB = 60.0
DEPARTMENTS = 20
BUILD_TIMEOUT = 3600.0
WORKER_TIMEOUT = 60.0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.snapshot_size``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot_size",
        description="Size and cost of a bank's access snapshot and its deltas, and the worker "
        "memory to hold it.",
    )
    parser.add_argument(
        "--badges", type=int, default=10_000, help="badges, one per person (default 10000)"
    )
    parser.add_argument(
        "--banks", type=int, default=20, help="banks of 12 stocked slots (default 20)"
    )
    parser.add_argument(
        "--loans",
        type=int,
        help="open loans (default: one badge in fifty, at most 10 per bank)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL URL; its database is dropped and made afresh (default {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"default {DEFAULT_REDIS_URL}"
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    return parser


# -- the world and the snapshot (a Django child process) ------------------------------------------


def build_world(badges: int, banks: int, loans: int) -> dict[str, Any]:
    """The world of the module docstring; returns the bank measured and a few people."""
    from datetime import time as clock
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from access.actions import (
        assign_shifts,
        create_access_rule,
        create_employee,
        create_shift,
        issue_badge,
        present_badge,
    )
    from assets.models import AssetType
    from bench import tap_world
    from devices.actions import record_slot_state
    from devices.models import LockerBank, Site
    from lockerhub.audit import SYSTEM

    now = timezone.now()
    lenders = math.ceil(loans / banks) if loans else 0
    world = tap_world.build_world(banks, lenders)
    site = Site.objects.get(name=tap_world.SITE_NAME)
    scanner = AssetType.objects.get(code="scanner")
    tablet = AssetType.objects.create(
        code="tablet", name="Tablet", max_loan_minutes=8 * 60, requires_pin=True
    )
    every_day = 0b1111111
    shifts = [
        create_shift(site=site, name=name, days=every_day, start=start, end=end, actor=SYSTEM)
        for name, start, end in (
            ("Early", clock(6), clock(14)),
            ("Late", clock(14), clock(22)),
            ("Night", clock(22), clock(6)),
        )
    ]
    made = sum(len(bank["uids"]) for bank in world["banks"])
    others = max(0, badges - made)
    people: dict[int, list[Any]] = {d: [] for d in range(DEPARTMENTS)}
    for n in range(others):
        d = n % DEPARTMENTS
        with transaction.atomic():
            employee = create_employee(
                employee_number=f"S{n + 1:06d}",
                first_name=f"Person{n + 1}",
                last_name="Snapshot",
                department=f"Department {d + 1:02d}",
                home_site=site,
                actor=SYSTEM,
                now=now,
            )
            issue_badge(
                employee,
                f"05{n + 1:010X}",
                actor=SYSTEM,
                valid_from=now - timedelta(days=30),
                pin=f"{n % 10000:04d}" if n % 500 == 499 else None,
                now=now,
            )
        people[d].append(employee)
    for d, members in people.items():
        if not members:
            continue
        department = members[0].department
        create_access_rule(
            name=f"Department {d + 1:02d} scanners",
            asset_types=[scanner, tablet] if d % 2 else [scanner],
            departments=[department],
            require_shift=True,
            actor=SYSTEM,
            now=now,
        )
        assign_shifts(
            members,
            shifts[d % len(shifts)],
            valid_from=(now - timedelta(days=7)).date(),
            actor=SYSTEM,
            now=now,
        )
    # Open loans: the first people of each bank take a device there, as a bank would report it.
    taken = 0
    for data in world["banks"]:
        bank = LockerBank.objects.get(code=data["code"])
        for uid in data["uids"]:
            if taken >= loans:
                break
            result = present_badge(bank, uid, now=now)
            if not result.granted:
                raise RuntimeError(f"take refused at {bank.code}: {result.message}")
            number = result.reservation.slot.number
            for change in ({"door_open": True}, {"present": False}, {"door_open": False}):
                record_slot_state(bank, number, at=timezone.now(), **change)
            taken += 1
    return {
        "bank": world["banks"][0]["code"],
        "loans": taken,
        "badges": made + others,
    }


def message_bytes(message: dict[str, Any]) -> int:
    """The size of a message as the consumer sends it (``DeviceConsumer.send_json``)."""
    return len(json.dumps(message, separators=(",", ":")).encode())


def measure(opts: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Build the world, then the snapshot and its deltas; write the worker's journal."""
    import django

    django.setup()
    from django.utils import timezone

    from access import core
    from access.actions import issue_badge, offboard_employee, revoke_badge
    from access.models import Badge, Employee
    from access.snapshot_builder import build_snapshot, slot_states
    from devices.bank_feed import BankFeed
    from devices.models import LockerBank
    from devices.worker_journal import ACCESS_DELTA, ACCESS_SNAPSHOT, Journal
    from lockerhub import signing
    from lockerhub.audit import SYSTEM

    loans = opts.loans if opts.loans is not None else min(opts.badges // 50, 10 * opts.banks)
    started = time.perf_counter()
    world = build_world(opts.badges, opts.banks, loans)
    report: dict[str, Any] = {
        "badges": world["badges"],
        "banks": opts.banks,
        "loans": world["loans"],
        "world_seconds": time.perf_counter() - started,
    }
    bank = LockerBank.objects.select_related("site").get(code=world["bank"])
    feed = BankFeed(bank)
    # What the snapshot holds, timed part by part (the feed's whole() does all of it).
    now = timezone.now()
    t0 = time.perf_counter()
    snapshot = build_snapshot(bank, now=now)
    t1 = time.perf_counter()
    data = snapshot.to_data()
    text = core.canonical(data)
    t2 = time.perf_counter()
    signing.sign_data(data)
    t3 = time.perf_counter()
    whole = feed.whole(timezone.now())
    t4 = time.perf_counter()
    report["snapshot"] = {
        "message_bytes": message_bytes(whole),
        "data_bytes": len(whole["data"].encode()),
        "deflated_bytes": len(zlib.compress(whole["data"].encode(), 6)),
        "badges": len(snapshot.badges),
        "holders": len(snapshot.holders),
        "holders_with_loans": sum(1 for h in snapshot.holders.values() if h.loans),
        "build_ms": (t1 - t0) * 1000,
        "serialise_ms": (t2 - t1) * 1000,
        "sign_ms": (t3 - t2) * 1000,
        "whole_ms": (t4 - t3) * 1000,
        "parts_bytes": {
            part: len(core.canonical(data[part]).encode())
            for part in ("badges", "holders", "slots", "types")
        },
    }
    del text
    # The same decision core the bank runs, on this snapshot.
    parsed = core.Snapshot.from_data(json.loads(whole["data"]))
    states = slot_states(bank)
    uids = list(Badge.objects.order_by("?").values_list("uid", flat=True)[:2000])
    timings = []
    for uid in uids:
        t = time.perf_counter()
        core.decide(parsed, states, time.time(), uid)
        timings.append((time.perf_counter() - t) * 1e6)
    timings.sort()
    report["decide_us"] = {
        "p50": timings[len(timings) // 2],
        "p99": timings[min(len(timings) - 1, math.ceil(len(timings) * 0.99) - 1)],
        "mean": statistics.fmean(timings),
    }
    # One change each, and the delta the feed sends for it (as after the consumer's wake-up).
    deltas: list[dict[str, Any]] = []
    # Three different people: one of the shift workers loses a badge, the newest person gets
    # a second one, and someone with a device out leaves (which also raises a recovery alert).
    victim = (
        Badge.objects.filter(
            status=Badge.Status.ACTIVE, employee__employee_number__startswith="S"
        ).first()
        or Badge.objects.filter(status=Badge.Status.ACTIVE).last()
    )
    revoke_badge(victim, actor=SYSTEM, reason="snapshot benchmark")
    deltas.append({"change": "badge revoked", **_delta(feed)})
    newcomer = (
        Employee.objects.filter(status=Employee.Status.ACTIVE)
        .exclude(pk=victim.employee_id)
        .order_by("-pk")
        .first()
    )
    issue_badge(newcomer, "07AB12CD34EF56", actor=SYSTEM, now=timezone.now())
    deltas.append({"change": "badge issued", **_delta(feed)})
    leaver = (
        Employee.objects.filter(checkouts__status="active")
        .exclude(pk__in=[victim.employee_id, newcomer.pk])
        .order_by("pk")
        .first()
    )
    leaver = leaver or Employee.objects.filter(status=Employee.Status.ACTIVE).last()
    offboard_employee(leaver, actor=SYSTEM)
    deltas.append({"change": "person offboarded", **_delta(feed)})
    report["deltas"] = [{k: v for k, v in d.items() if k != "message"} for d in deltas]
    # The worker's journal as the worker would have written it: the config, the snapshot
    # and the deltas exactly as signed; and one with the config alone, to compare.
    slots = list(bank.slots.order_by("number"))
    config = {
        "type": "config",
        "bank": bank.code,
        "slots": [
            {"slot": s.number, "board": s.board, "lock_index": s.lock_index,
             "has_charger": s.has_charger}
            for s in slots
        ],
        "invert_hook": bank.invert_hook,
        "door_held_open_seconds": bank.door_held_open_seconds,
        "heartbeat_seconds": 5,
        "reservation_timeout_seconds": 30,
    }  # fmt: skip
    for name, signed in (("journal.sqlite3", True), ("config-only.sqlite3", False)):
        journal = Journal(out_dir / name)
        journal.save_config(config)
        if signed:
            journal.store_access(ACCESS_SNAPSHOT, whole["data"], whole["sig"])
            for delta in deltas:
                message = delta["message"]
                journal.store_access(ACCESS_DELTA, message["data"], message["sig"])
        journal.close()
    report["worker"] = {
        "bank": bank.code,
        "boards": sorted({s.board for s in slots}),
        "version": json.loads(deltas[-1]["message"]["data"])["version"],
    }
    return report


def _delta(feed: Any) -> dict[str, Any]:
    from django.utils import timezone

    started = time.perf_counter()
    messages = [m for m in feed.updates(timezone.now()) if m["type"] == "access_delta"]
    built_ms = (time.perf_counter() - started) * 1000
    if len(messages) != 1:
        raise RuntimeError(f"expected one delta, the feed sent {len(messages)}")
    message = messages[0]
    parts = json.loads(message["data"])
    return {
        "message": message,
        "message_bytes": message_bytes(message),
        # What one bank's connection spends on it; every connected bank builds its own.
        "built_ms": built_ms,
        "entries": {
            part: len(parts[part])
            for part in ("types", "badges", "holders", "slots")
            if part in parts
        },
    }


# -- the worker holding it ------------------------------------------------------------------------


def worker_memory(journal: Path, bank: str, boards: list[int], public_key: str) -> dict[str, Any]:
    """Start ``python -m devices.worker`` on a pty board with ``journal``, let it settle with
    what the journal holds loaded, and read its memory (MB) from /proc."""
    emulator = KerongBoardEmulator(boards).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOCKERHUB_"))}
    # No server answers at --server: the token is never checked.
    env.update(LOCKERHUB_BANK_TOKEN=secrets.token_urlsafe(16), PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "devices.worker", "--server", f"ws://127.0.0.1:{free_port()}",
         "--bank", bank, "--server-key", public_key, "--lock-port", emulator.port,
         "--nfc", "none", "--journal", str(journal), "--kiosk-port", "0", "--log-level", "INFO"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    seen: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            # The snapshot is restored in the constructor; then the doors are read.
            if "slot(s) journaled" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not started.wait(WORKER_TIMEOUT):
            raise RuntimeError(f"the worker did not start: {''.join(seen[-20:])}")
        # Running: polling the board, trying the (absent) server. Let it settle.
        time.sleep(3)
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited: {''.join(seen[-20:])}")
        status = Path(f"/proc/{process.pid}/status").read_text()
        memory = {
            key: int(line.split()[1]) * 1024 / 1e6
            for line in status.splitlines()
            for key in ("VmHWM", "VmRSS")
            if line.startswith(f"{key}:")
        }
        refused = [line for line in seen if "refused" in line]
        if refused:
            raise RuntimeError(f"the worker refused its snapshot: {refused[0]}")
        restored = next((line for line in seen if "restored from the journal" in line), None)
        return {"peak_rss_mb": memory["VmHWM"], "rss_mb": memory["VmRSS"], "restored": restored}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        emulator.stop()


# -- the run ------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    snap, worker, decide = report["snapshot"], report["worker"], report["decide_us"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows = [
        ("badges / holders in the snapshot", f"{snap['badges']} / {snap['holders']}"),
        ("open loans (holders with one)", f"{report['loans']} ({snap['holders_with_loans']})"),
        ("world built in s", f"{report['world_seconds']:.0f}"),
        (
            "whole snapshot, signed message bytes",
            f"{snap['message_bytes']} ({snap['message_bytes'] / 1e6:.2f} MB; "
            f"goal <= 1 MB: {verdict(snap['message_bytes'] <= GOAL_SNAPSHOT_BYTES)})",
        ),
        ("  signed data bytes", f"{snap['data_bytes']}"),
        ("  deflated bytes (for reference)", f"{snap['deflated_bytes']}"),
        (
            "  badges / holders / slots / types bytes",
            " / ".join(
                str(snap["parts_bytes"][p]) for p in ("badges", "holders", "slots", "types")
            ),
        ),
        ("whole snapshot built and signed in ms", f"{snap['whole_ms']:.0f}"),
        (
            "  build / serialise / sign ms",
            f"{snap['build_ms']:.0f} / {snap['serialise_ms']:.0f} / {snap['sign_ms']:.0f}",
        ),
        ("decide on it p50 / p99 us", f"{decide['p50']:.0f} / {decide['p99']:.0f}"),
    ]
    for delta in report["deltas"]:
        entries = ", ".join(f"{n} {part}" for part, n in delta["entries"].items())
        rows.append(
            (
                f"delta after {delta['change']}, bytes",
                f"{delta['message_bytes']} ({entries}; built in {delta['built_ms']:.0f} ms; "
                f"goal <= 2 KB: {verdict(delta['message_bytes'] <= GOAL_DELTA_BYTES)})",
            )
        )
    rows += [
        (
            "worker peak RSS MB holding it",
            f"{worker['peak_rss_mb']:.1f} (now {worker['rss_mb']:.1f}; goal <= 60 MB: "
            f"{verdict(worker['peak_rss_mb'] <= GOAL_WORKER_MB)})",
        ),
        ("worker peak RSS MB, no snapshot", f"{report['worker_empty']['peak_rss_mb']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"access snapshot size: bank {worker['bank']}, {report['badges']} badges")
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Build the world in a child process, measure, print the figures."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.child:
        report = measure(opts, Path(opts.child))
        (Path(opts.child) / "report.json").write_text(json.dumps(report))
        return 0
    if not 1 <= opts.badges <= 1_000_000 or not 1 <= opts.banks <= 1000:
        parser.error("--badges must be 1-1000000 and --banks 1-1000")
    if opts.loans is not None and not 0 <= opts.loans <= 10 * opts.banks:
        parser.error("--loans must be 0 to 10 per bank")
    try:
        database_name(opts.database_url)
    except ValueError as exc:
        parser.error(str(exc))
    work_dir = Path(tempfile.mkdtemp(prefix="lockerhub-bench-snapshot-"))
    try:
        recreate_database(opts.database_url)
        seed, public_key = signing_key_pair()
        env = server_env(opts.database_url, opts.redis_url, work_dir, signing_key=seed)
        run_python(["manage.py", "migrate", "--noinput"], env, "migrate")
        args = [*(argv if argv is not None else sys.argv[1:]), "--child", str(work_dir)]
        run_python(["-m", "bench.snapshot_size", *args], env, "building", timeout=BUILD_TIMEOUT)
        report = json.loads((work_dir / "report.json").read_text())
        worker = report["worker"]
        loaded = worker_memory(
            work_dir / "journal.sqlite3", worker["bank"], worker["boards"], public_key
        )
        if not loaded["restored"]:
            raise RuntimeError("the worker did not restore the snapshot from its journal")
        report["worker"].update(loaded)
        report["worker_empty"] = worker_memory(
            work_dir / "config-only.sqlite3", worker["bank"], worker["boards"], public_key
        )
    finally:
        if not opts.keep_db:
            drop_database(opts.database_url)
        shutil.rmtree(work_dir, ignore_errors=True)
    print_report(report)
    if opts.json:
        Path(opts.json).write_text(json.dumps(report, indent=2))
    ok = (
        report["snapshot"]["message_bytes"] <= GOAL_SNAPSHOT_BYTES
        and all(d["message_bytes"] <= GOAL_DELTA_BYTES for d in report["deltas"])
        and report["worker"]["peak_rss_mb"] <= GOAL_WORKER_MB
    )
    print(f"goals {'met' if ok else 'NOT all met'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    sys.exit(main())
