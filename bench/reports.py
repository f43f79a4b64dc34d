"""Benchmark: every utilization report over a year of history for 20 banks, on PostgreSQL.

    .venv/bin/python -m bench.reports [--banks 20] [--days 365] [--keep]

Creates its own database (``lockerhub_bench_reports`` on the server of ``DATABASE_URL``, default
postgres://postgres@127.0.0.1:5432/), migrates it, bulk-loads the history with COPY (checkouts
and badge taps; at least 5,000,000 rows of taps alone at the default size), builds the report
rollups, then times each report three times and prints the median. The database is dropped at
the end unless ``--keep`` is given. Figures are recorded in docs/reports.md.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "lockerhub_bench_reports"
SLOTS_PER_BANK = 80
# (code, name, assets per bank)
TYPES = [("scanner", "Scanner", 52), ("tablet", "Tablet", 16), ("printer", "Printer", 4)]
EMPLOYEES_PER_BANK = 150
TAKES_WEEKDAY, TAKES_WEEKEND = 400, 170
DENIED_SHARE = 0.14
DENIAL_REASONS = [
    ("outside_shift", 40),
    ("badge_unknown", 20),
    ("limit_reached", 15),
    ("item_overdue", 10),
    ("badge_revoked", 5),
    ("not_permitted", 5),
    ("badge_expired", 3),
    ("pin_incorrect", 2),
]
# Takes per local hour: three shifts, busiest at their starts.
HOUR_WEIGHTS = [2, 1, 1, 1, 2, 12, 30, 18, 8, 6, 6, 6, 8, 22, 26, 12, 6, 5, 5, 5, 7, 16, 12, 4]


def server_url() -> str:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/")
    base, _, _ = url.rpartition("/")
    return base + "/"


def admin_connect(base: str) -> psycopg.Connection:
    return psycopg.connect(base + "postgres", autocommit=True)


def recreate_database(base: str) -> None:
    with admin_connect(base) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB_NAME)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))


def drop_database(base: str) -> None:
    from django.db import connections

    connections.close_all()
    with admin_connect(base) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB_NAME)))


def setup_django(base: str) -> None:
    os.environ["DATABASE_URL"] = base + DB_NAME
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "lockerhub.settings"
    import django

    django.setup()


def step(label: str):
    class Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            print(f"{label} …", end="", flush=True)
            return self

        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.start
            print(f" {self.seconds:.1f} s", flush=True)

    return Timer()


def make_master_data(banks: int):
    """Two sites in different time zones, ``banks`` banks, their slots, assets and people."""
    from access.models import Employee
    from assets.models import Asset, AssetType
    from devices.models import LockerBank, Site, Slot

    sites = [
        Site.objects.create(name="Hamburg DC", time_zone="Europe/Berlin"),
        Site.objects.create(name="Memphis DC", time_zone="America/Chicago"),
    ]
    types = [AssetType.objects.create(code=c, name=n) for c, n, _ in TYPES]
    world = []
    for b in range(banks):
        bank = LockerBank.objects.create(site=sites[b % 2], code=f"BANK-{b + 1:02d}")
        slots = Slot.objects.bulk_create(
            Slot(bank=bank, number=n, board=(n - 1) // 16, lock_index=(n - 1) % 16)
            for n in range(1, SLOTS_PER_BANK + 1)
        )
        assets = []
        for asset_type, (code, _, count) in zip(types, TYPES, strict=True):
            assets += [
                Asset(asset_tag=f"{code[:2].upper()}-{b + 1:02d}-{i:03d}", asset_type=asset_type)
                for i in range(count)
            ]
        assets = Asset.objects.bulk_create(assets)
        for slot, asset in zip(slots, assets, strict=False):
            slot.asset = asset
            slot.present = True
        Slot.objects.bulk_update(slots, ["asset", "present"])
        people = Employee.objects.bulk_create(
            Employee(
                employee_number=f"E{b + 1:02d}{i:04d}",
                first_name=f"Person {i}",
                last_name=f"B{b + 1}",
            )
            for i in range(EMPLOYEES_PER_BANK)
        )
        world.append((bank, sites[b % 2].tz, slots, assets, people))
    return world


def loan_minutes(rng: random.Random) -> float:
    # Half are quick jobs, half last most of a shift.
    if rng.random() < 0.5:
        return rng.uniform(10, 120)
    return rng.uniform(240, 540)


def generate(world, first: date, days: int, seed: int = 7):
    """Yield ('checkout', row) and ('tap', row) tuples in COPY column order, bank by bank."""
    rng = random.Random(seed)
    reasons = [r for r, w in DENIAL_REASONS for _ in range(w)]
    hours = list(range(24))
    for bank, tz, slots, assets, people in world:
        slot_of = {asset.pk: slot.pk for slot, asset in zip(slots, assets, strict=False)}
        by_type: dict[int, list] = {}
        for asset in assets:
            by_type.setdefault(asset.asset_type_id, []).append(asset)
        free: dict[int, list[tuple[datetime, int]]] = {
            type_id: [(datetime.min.replace(tzinfo=UTC), a.pk) for a in group]
            for type_id, group in by_type.items()
        }
        type_ids = list(by_type)
        type_weights = [len(by_type[t]) for t in type_ids]
        for d in range(days):
            day = first + timedelta(days=d)
            n = TAKES_WEEKEND if day.weekday() >= 5 else TAKES_WEEKDAY
            n = int(n * rng.uniform(0.8, 1.2))
            starts = sorted(
                datetime(day.year, day.month, day.day, h, tzinfo=tz)
                .astimezone(UTC)
                .replace(minute=0)
                + timedelta(seconds=rng.uniform(0, 3600))
                for h in rng.choices(hours, HOUR_WEIGHTS, k=n)
            )
            for taken in starts:
                person = rng.choice(people)
                uid = f"04{person.pk:012X}"
                type_id = rng.choices(type_ids, type_weights)[0]
                heap = free[type_id]
                free_at, asset_id = heap[0]
                if free_at > taken:
                    yield "tap", (bank.pk, taken, uid, person.pk, False, "no_asset_available")
                    continue
                back = taken + timedelta(minutes=loan_minutes(rng))
                heapq.heapreplace(heap, (back, asset_id))
                due = taken + timedelta(hours=8, minutes=30)
                slot = slot_of[asset_id]
                yield (
                    "tap",
                    (bank.pk, taken - timedelta(seconds=4), uid, person.pk, True, "granted_take"),
                )
                yield (
                    "tap",
                    (bank.pk, back - timedelta(seconds=6), uid, person.pk, True, "granted_return"),
                )
                yield (
                    "checkout",
                    (
                        asset_id,
                        person.pk,
                        "returned",
                        slot,
                        taken - timedelta(seconds=4),
                        taken,
                        due,
                        slot,
                        back,
                        "ok",
                    ),
                )
                if rng.random() < DENIED_SHARE * 2:
                    at = taken + timedelta(minutes=rng.uniform(-90, 90))
                    yield "tap", (bank.pk, at, uid, person.pk, False, rng.choice(reasons))


def load(world, first: date, days: int) -> tuple[int, int]:
    from django.conf import settings

    url = settings.DATABASES["default"]
    dsn = f"host={url['HOST']} port={url['PORT'] or 5432} user={url['USER']} dbname={url['NAME']}"
    if url.get("PASSWORD"):
        dsn += f" password={url['PASSWORD']}"
    counts = {"checkout": 0, "tap": 0}
    # Two connections, so both COPY streams stay open while the history is generated once.
    with psycopg.connect(dsn) as conn_c, psycopg.connect(dsn) as conn_t:
        with (
            conn_c.cursor().copy(
                "COPY assets_checkout (asset_id, employee_id, status, slot_out_id, reserved_at,"
                " taken_at, due_at, slot_back_id, returned_at, condition, condition_note)"
                " FROM STDIN"
            ) as checkouts,
            conn_t.cursor().copy(
                "COPY access_accessevent (bank_id, at, uid, employee_id, granted, reason)"
                " FROM STDIN"
            ) as taps,
        ):
            for kind, row in generate(world, first, days):
                counts[kind] += 1
                if kind == "checkout":
                    checkouts.write_row((*row, ""))
                else:
                    taps.write_row(row)
        conn_c.commit()
        conn_t.commit()
        conn_t.autocommit = True
        conn_t.execute("ANALYZE")
    return counts["checkout"], counts["tap"]


def add_charge_faults(world, first: date, days: int) -> int:
    from lockerhub.models import Alert

    rng = random.Random(11)
    alerts = []
    for bank, _, slots, _, _ in world:
        for _ in range(days // 4):
            slot = rng.choice(slots[:20])
            at = datetime.combine(first, datetime.min.time(), tzinfo=UTC) + timedelta(
                days=rng.uniform(0, days)
            )
            alerts.append(
                Alert(
                    kind=Alert.Kind.CHARGE_FAULT,
                    dedup_key=f"charge-fault:{bank.code}:{slot.number}",
                    title="Charge fault",
                    bank=bank,
                    site_id=bank.site_id,
                    opened_at=at,
                    resolved_at=at + timedelta(hours=2),
                )
            )
    Alert.objects.bulk_create(alerts)
    return len(alerts)


def time_reports(filters: list[tuple[str, object]], runs: int = 3) -> list[tuple[str, str, float]]:
    from django.db import connection

    from assets.reports import REPORTS

    results = []
    for label, report_filter in filters:
        for spec in REPORTS.values():
            spec.build(report_filter)  # warm the caches once
            timings = []
            for _ in range(runs):
                start = time.perf_counter()
                spec.build(report_filter)
                timings.append(time.perf_counter() - start)
            results.append((label, spec.slug, statistics.median(timings)))
            print(f"  {label:<28} {spec.slug:<18} {statistics.median(timings) * 1000:8.1f} ms")
    connection.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep", action="store_true", help="leave the database for inspection")
    args = parser.parse_args()

    base = server_url()
    recreate_database(base)
    setup_django(base)
    from django.core.management import call_command
    from django.db import connection

    from assets.reports import ReportFilter
    from assets.rollups import rebuild_report_rollups, refresh_report_rollups
    from devices.models import LockerBank, Site

    try:
        with step("migrate"):
            call_command("migrate", verbosity=0, skip_checks=True)
        first = date(2025, 1, 1)
        last = first + timedelta(days=args.days - 1)
        with step(f"master data ({args.banks} banks)"):
            world = make_master_data(args.banks)
        with step("generate and COPY history") as load_step:
            checkouts, taps = load(world, first, args.days)
        with step("charge-fault alerts"):
            faults = add_charge_faults(world, first, args.days)
        print(
            f"  {checkouts:,} checkouts, {taps:,} badge taps, {faults:,} charge faults "
            f"= {checkouts + taps + faults:,} events"
        )
        now = datetime.combine(last + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
        with step("build rollups (whole year)") as rollup_step:
            rebuild_report_rollups(first - timedelta(days=1), last + timedelta(days=1), now=now)
        from assets.models import RollupWatermark

        RollupWatermark.objects.update_or_create(pk=1, defaults={"refreshed_until": now})
        with step("incremental refresh (nothing new)") as refresh_step:
            refresh_report_rollups(now=now + timedelta(minutes=1))
        with connection.cursor() as cursor:
            # What autovacuum does in production after a bulk load: statistics and visibility map.
            cursor.execute("VACUUM ANALYZE")

        site = Site.objects.get(name="Hamburg DC")
        bank = LockerBank.objects.get(code="BANK-01")
        filters = [
            ("all banks, whole year", ReportFilter(start=first, end=last)),
            ("one site, whole year", ReportFilter(start=first, end=last, site=site)),
            (
                "one bank, last 30 days",
                ReportFilter(start=last - timedelta(days=29), end=last, bank=bank),
            ),
        ]
        print("report timings (median of 3):")
        results = time_reports(filters)
        worst = max(results, key=lambda r: r[2])
        print(
            f"load {load_step.seconds:.0f} s, rollups {rollup_step.seconds:.0f} s, "
            f"refresh {refresh_step.seconds * 1000:.0f} ms; slowest report: {worst[1]} "
            f"({worst[0]}) {worst[2] * 1000:.0f} ms — goal ≤ 1000 ms "
            f"{'met' if worst[2] <= 1 else 'NOT met'}"
        )
    finally:
        if not args.keep:
            drop_database(base)


if __name__ == "__main__":
    main()
