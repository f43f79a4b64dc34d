"""How long the overdue sweep takes as checkout history grows (run by hand, on PostgreSQL).

    .venv/bin/python bench/overdue_sweep.py [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

Creates the database ``lockerhub_bench`` (dropped first if left over, dropped again at the
end unless --keep), migrates it, loads 10,000 open checkouts (1,000 of them overdue, spread
over three hours so alerts sit on every rung of the ladder) and then returned history in steps
up to 1,000,000 rows with COPY. At each step it times:

- the steady sweep: the run every minute when nothing is new (median of several runs);
- a busy minute: 50 items fall overdue at once and are raised, with their deliveries planned.

It measures the sweep's database work: deliveries are planned but not sent, and live events go
to an in-memory channel layer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "lockerhub_bench"
OPEN = 10_000
OVERDUE = 1_000
BUSY_MINUTE = 50
EMPLOYEES = 2_000
STEPS = [0, 100_000, 300_000, 1_000_000]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a database on the server to connect to while creating and dropping the bench one",
    )
    parser.add_argument("--keep", action="store_true", help="leave lockerhub_bench in place")
    parser.add_argument("--runs", type=int, default=7, help="steady sweeps timed per step")
    args = parser.parse_args()

    import psycopg

    base, _, _ = args.admin_url.rpartition("/")
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="lockerhub.settings",
        DATABASE_URL=f"{base}/{BENCH_DB}",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + "k" * 60),
    )
    try:
        return run(args.runs)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def run(runs: int) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # Measure the database work only: no broker, no Redis for live events.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from lockerhub import actions

    actions.enqueue_deliveries = lambda **kwargs: None

    print(f"migrating {BENCH_DB}…", flush=True)
    call_command("migrate", verbosity=0)
    now = datetime.now(UTC).replace(microsecond=0)
    world = load_world(now)
    print(f"{OPEN:,} open checkouts ({OVERDUE:,} overdue), {EMPLOYEES:,} employees", flush=True)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lockerhub.alerts.rules import sweep_overdue

    # A backlog (the sweep starting with every overdue item unalerted) clears SWEEP_BATCH a run.
    started, raised, backlog_runs = time.perf_counter(), 0, 0
    while (step := sweep_overdue(now)).raised:
        raised += step.raised
        backlog_runs += 1
    print(
        f"backlog: {raised:,} alerts raised in {backlog_runs} runs, "
        f"{time.perf_counter() - started:.2f} s in all",
        flush=True,
    )

    print()
    print(f"{'history rows':>14} {'steady sweep':>14} {'queries':>8} {'busy minute (+50)':>19}")
    loaded = 0
    for minute, target in enumerate(STEPS, start=1):
        if target > loaded:
            load_history(world, target - loaded, now, offset=loaded)
            loaded = target
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                result = sweep_overdue(now)
            timings.append(time.perf_counter() - started)
            assert result.raised == result.escalated == result.resolved == 0, result
        # A busy minute: the next items in line fall due at once.
        fall_due(world, now, minute)
        started = time.perf_counter()
        busy = sweep_overdue(now)
        busy_time = time.perf_counter() - started
        assert busy.raised == BUSY_MINUTE, busy
        print(
            f"{loaded:>14,} {statistics.median(timings) * 1000:>11.1f} ms {len(queries):>8} "
            f"{busy_time * 1000:>16.1f} ms",
            flush=True,
        )
    return 0


def load_world(now: datetime) -> dict[str, Any]:
    from django.contrib.auth.models import Group, User

    from access.models import Employee
    from assets.models import Asset, AssetType, Checkout
    from devices.models import LockerBank, Site, Slot
    from lockerhub.models import WebhookEndpoint
    from lockerhub.roles import Role

    site = Site.objects.create(name="Bench DC", time_zone="Europe/Berlin")
    bank = LockerBank.objects.create(site=site, code="BANK-BENCH", is_online=True)
    slots = Slot.objects.bulk_create(
        Slot(bank=bank, number=n, board=(n - 1) // 16, lock_index=(n - 1) % 16)
        for n in range(1, 49)
    )
    scanner = AssetType.objects.create(code="scanner", name="Scanner")
    boss = Employee.objects.create(employee_number="B0000", first_name="Boss", email="b@x.test")
    employees = Employee.objects.bulk_create(
        Employee(
            employee_number=f"E{i:05d}",
            first_name=f"Emp{i}",
            email=f"e{i}@x.test",
            supervisor=boss,
            home_site=site,
        )
        for i in range(EMPLOYEES)
    )
    manager = User.objects.create_user("fm", "fm@x.test", "bench-password-1")
    manager.groups.add(Group.objects.get(name=Role.FACILITY_MANAGER.group_name))
    WebhookEndpoint.objects.create(name="bench", url="https://hooks.example.com/bench")
    assets = Asset.objects.bulk_create(
        Asset(asset_tag=f"SC-{i:06d}", asset_type=scanner, status=Asset.Status.CHECKED_OUT)
        for i in range(OPEN)
    )
    rows = []
    for i, asset in enumerate(assets):
        # The first OVERDUE fell due over the last three hours; the rest are due over the next
        # few hours, BUSY_MINUTE more each "minute" of the benchmark.
        due = (
            now - timedelta(seconds=10 + i * 10)
            if i < OVERDUE
            else now + timedelta(hours=1, seconds=i)
        )
        taken = due - timedelta(hours=8)
        rows.append(
            Checkout(
                asset=asset,
                employee=employees[i % EMPLOYEES],
                status=Checkout.Status.ACTIVE,
                slot_out=slots[i % len(slots)],
                reserved_at=taken,
                opened_at=taken,
                taken_at=taken,
                due_at=due,
            )
        )
    Checkout.objects.bulk_create(rows, batch_size=2000)
    return {"assets": assets, "employees": employees, "slots": slots}


def load_history(world: dict[str, Any], count: int, now: datetime, offset: int) -> None:
    """COPY ``count`` returned checkouts spread over the last two years."""
    from django.db import connection

    from assets.models import Checkout

    assets, employees, slots = world["assets"], world["employees"], world["slots"]
    template = Checkout(
        asset=assets[0],
        employee=employees[0],
        slot_out=slots[0],
        slot_back=slots[0],
        status=Checkout.Status.RETURNED,
        condition=Checkout.Condition.OK,
        reserved_at=now,
        opened_at=now,
        taken_at=now,
        due_at=now,
        returned_at=now,
    )
    fields = [f for f in Checkout._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]
    fixed = [f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields]
    position = {f.attname: i for i, f in enumerate(fields)}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        sql = f"COPY assets_checkout ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for n in range(offset, offset + count):
                row = list(fixed)
                taken = now - timedelta(days=730) + timedelta(seconds=(n * 61) % (729 * 86400))
                row[position["asset_id"]] = assets[n % len(assets)].pk
                row[position["employee_id"]] = employees[n % len(employees)].pk
                row[position["slot_out_id"]] = slots[n % len(slots)].pk
                row[position["slot_back_id"]] = slots[(n + 1) % len(slots)].pk
                for name in ("reserved_at", "opened_at", "taken_at"):
                    row[position[name]] = taken
                row[position["due_at"]] = taken + timedelta(hours=8)
                row[position["returned_at"]] = taken + timedelta(hours=4)
                copy.write_row(row)
    print(f"  loaded {count:,} history rows in {time.perf_counter() - started:.1f} s", flush=True)


def fall_due(world: dict[str, Any], now: datetime, minute: int) -> None:
    from assets.models import Checkout

    first = OVERDUE + (minute - 1) * BUSY_MINUTE
    tags = [a.pk for a in world["assets"][first : first + BUSY_MINUTE]]
    Checkout.objects.filter(asset_id__in=tags, status=Checkout.Status.ACTIVE).update(
        due_at=now - timedelta(seconds=5)
    )


if __name__ == "__main__":
    sys.exit(main())
