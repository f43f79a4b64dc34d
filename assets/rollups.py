"""Report rollups: per-day aggregates of checkouts and badge taps, local to each bank's site.

The reports (``assets.reports``) read these tables only, so a year of history answers as fast
as a week. Rows are derived data: ``rebuild_bank`` recomputes a bank's days from the source rows
(checkouts, access events) and replaces what was there, so running it twice changes nothing.
``refresh_report_rollups`` (every minute from beat) rebuilds the days touched since its last
run; ``rebuild_recent_rollups`` (nightly) rebuilds the last week to catch rows that arrived late
with old timestamps (a bank worker replaying its journal after a long outage).

Attribution, documented in docs/reports.md: a take, its loan length and whether it ran overdue
belong to the local day and hour the device was taken; the time a device is out is split over
the local days it spans; peaks are the most devices out at the same instant during a local day.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from access.models import AccessEvent
from assets.models import (
    AccessByDay,
    AssetUsageByDay,
    Checkout,
    EmployeeUsageByDay,
    LoanLengthByDay,
    RollupWatermark,
    SlotUsageByDay,
    TakesByHour,
    UsageByDay,
)
from devices.models import LockerBank

logger = logging.getLogger(__name__)

# Rows written with a timestamp a little before the previous run (a door that closed while the
# last refresh ran) are still picked up; older stragglers wait for the nightly rebuild.
REFRESH_SLACK = timedelta(minutes=15)
NIGHTLY_DAYS = 7
ONE_DAY = timedelta(days=1)

ROLLUP_MODELS = (
    TakesByHour,
    UsageByDay,
    LoanLengthByDay,
    SlotUsageByDay,
    AssetUsageByDay,
    EmployeeUsageByDay,
    AccessByDay,
)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant a local day starts.

    UTC, not local, on purpose: Python subtracts two datetimes sharing one tzinfo by wall clock,
    which would make a 23-hour spring-forward day 24 hours long.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def split_by_local_day(
    start: datetime, end: datetime, tz: ZoneInfo
) -> Iterator[tuple[date, float]]:
    """Seconds of [start, end) falling on each local day."""
    start = start.astimezone(UTC)
    end = end.astimezone(UTC)
    day = start.astimezone(tz).date()
    while start < end:
        boundary = local_midnight(day + ONE_DAY, tz)
        piece_end = min(end, boundary)
        yield day, (piece_end - start).total_seconds()
        start = piece_end
        day += ONE_DAY


@dataclass(frozen=True, slots=True)
class _Loan:
    asset_id: int
    type_id: int
    employee_id: int
    slot_id: int
    taken_at: datetime
    returned_at: datetime | None
    due_at: datetime | None

    def end(self, now: datetime) -> datetime:
        return self.returned_at or max(now, self.taken_at)

    def is_overdue(self, now: datetime) -> bool:
        if self.due_at is None:
            return False
        if self.returned_at is not None:
            return self.returned_at > self.due_at
        return self.due_at < now


def _loans(bank: LockerBank, start: datetime, end: datetime) -> list[_Loan]:
    """Every loan from ``bank`` that overlaps [start, end): taken in it, or taken before and still out in it."""
    rows = (
        Checkout.objects.filter(
            slot_out__bank=bank,
            status__in=(Checkout.Status.ACTIVE, Checkout.Status.RETURNED),
            taken_at__lt=end,
        )
        .filter(
            Q(taken_at__gte=start) | Q(returned_at__gt=start) | Q(status=Checkout.Status.ACTIVE)
        )
        .order_by()
        .values_list(
            "asset_id",
            "asset__asset_type_id",
            "employee_id",
            "slot_out_id",
            "taken_at",
            "returned_at",
            "due_at",
        )
    )
    return [_Loan(*row) for row in rows.iterator(chunk_size=5000)]


def _peaks(
    loans: list[_Loan], now: datetime, tz: ZoneInfo, first: date, last: date
) -> tuple[dict[tuple[int, date], int], dict[date, int]]:
    """Most loans out at one instant per (type, local day) and per local day over all types."""
    events: list[tuple[datetime, int, int]] = []
    for loan in loans:
        end = loan.end(now)
        if end > loan.taken_at:
            events.append((loan.taken_at, 1, loan.type_id))
            events.append((end, -1, loan.type_id))
    # A return and a take at the same instant never overlap: returns first.
    events.sort(key=lambda event: (event[0], event[1]))
    by_type: dict[tuple[int, date], int] = {}
    overall: dict[date, int] = {}
    level: Counter[int] = Counter()
    total = 0
    current = first - ONE_DAY  # the day whose peak is being accumulated

    def carry_into(day: date) -> None:
        # Whatever is out at midnight counts toward the new day's peak.
        for type_id, out in level.items():
            if out:
                key = (type_id, day)
                by_type[key] = max(by_type.get(key, 0), out)
        if total:
            overall[day] = max(overall.get(day, 0), total)

    for at, delta, type_id in events:
        day = at.astimezone(tz).date()
        while current < min(day, last):
            current += ONE_DAY
            if current >= first:
                carry_into(current)
        if day > last:
            break
        level[type_id] += delta
        total += delta
        if delta > 0 and day >= first:
            key = (type_id, day)
            by_type[key] = max(by_type.get(key, 0), level[type_id])
            overall[day] = max(overall.get(day, 0), total)
    while current < last:
        current += ONE_DAY
        if current >= first:
            carry_into(current)
    return by_type, overall


def rebuild_bank(bank: LockerBank, first: date, last: date, *, now: datetime | None = None) -> None:
    """Recompute every rollup row of ``bank`` for local days ``first``..``last`` (inclusive)."""
    now = now or timezone.now()
    tz = bank.site.tz
    start, end = local_midnight(first, tz), local_midnight(last + ONE_DAY, tz)
    loans = _loans(bank, start, end)

    takes_by_hour: Counter[tuple[int, date, int]] = Counter()
    usage: dict[tuple[int, date], Counter[str]] = defaultdict(Counter)
    lengths: Counter[tuple[int, date, int]] = Counter()
    slots: dict[tuple[int, int, date], Counter[str]] = defaultdict(Counter)
    assets: dict[tuple[int, date], Counter[str]] = defaultdict(Counter)
    asset_types: dict[int, int] = {}
    employees: dict[tuple[int, int, date], Counter[str]] = defaultdict(Counter)

    for loan in loans:
        asset_types[loan.asset_id] = loan.type_id
        loan_end = loan.end(now)
        if start <= loan.taken_at < end:
            local = loan.taken_at.astimezone(tz)
            day = local.date()
            takes_by_hour[(loan.type_id, day, local.hour)] += 1
            overdue = int(loan.is_overdue(now))
            row = usage[(loan.type_id, day)]
            row["takes"] += 1
            row["overdue"] += overdue
            person = employees[(loan.employee_id, loan.type_id, day)]
            person["takes"] += 1
            person["overdue"] += overdue
            if loan.returned_at is not None:
                seconds = max(0, int((loan.returned_at - loan.taken_at).total_seconds()))
                row["returned"] += 1
                row["loan_seconds"] += seconds
                person["loan_seconds"] += seconds
                lengths[(loan.type_id, day, seconds // 60)] += 1
            slots[(loan.slot_id, loan.type_id, day)]["takes"] += 1
            assets[(loan.asset_id, day)]["takes"] += 1
        for day, seconds in split_by_local_day(max(loan.taken_at, start), min(loan_end, end), tz):
            slots[(loan.slot_id, loan.type_id, day)]["busy_seconds"] += int(seconds)
            assets[(loan.asset_id, day)]["busy_seconds"] += int(seconds)

    peaks, bank_peaks = _peaks(loans, now, tz, first, last)
    for type_id, day in peaks:
        usage[(type_id, day)]  # a day with devices out but none taken still has a peak

    access = (
        AccessEvent.objects.filter(bank=bank, at__gte=start, at__lt=end)
        .annotate(day=TruncDate("at", tzinfo=tz))
        .order_by()
        .values_list("day", "granted", "reason")
        .annotate(taps=Count("id"))
    )

    with transaction.atomic():
        for model in ROLLUP_MODELS:
            model.objects.filter(bank=bank, day__gte=first, day__lte=last).delete()
        TakesByHour.objects.bulk_create(
            TakesByHour(bank=bank, asset_type_id=t, day=d, hour=h, takes=n)
            for (t, d, h), n in takes_by_hour.items()
        )
        UsageByDay.objects.bulk_create(
            UsageByDay(
                bank=bank,
                asset_type_id=t,
                day=d,
                takes=c["takes"],
                returned=c["returned"],
                loan_seconds=c["loan_seconds"],
                overdue=c["overdue"],
                peak=peaks.get((t, d), 0),
                bank_peak=bank_peaks.get(d, 0),
            )
            for (t, d), c in usage.items()
        )
        LoanLengthByDay.objects.bulk_create(
            LoanLengthByDay(bank=bank, asset_type_id=t, day=d, minutes=m, loans=n)
            for (t, d, m), n in lengths.items()
        )
        SlotUsageByDay.objects.bulk_create(
            SlotUsageByDay(
                slot_id=s,
                bank=bank,
                asset_type_id=t,
                day=d,
                takes=c["takes"],
                busy_seconds=c["busy_seconds"],
            )
            for (s, t, d), c in slots.items()
        )
        AssetUsageByDay.objects.bulk_create(
            AssetUsageByDay(
                asset_id=a,
                bank=bank,
                asset_type_id=asset_types[a],
                day=d,
                takes=c["takes"],
                busy_seconds=c["busy_seconds"],
            )
            for (a, d), c in assets.items()
        )
        EmployeeUsageByDay.objects.bulk_create(
            EmployeeUsageByDay(
                employee_id=e,
                bank=bank,
                asset_type_id=t,
                day=d,
                takes=c["takes"],
                loan_seconds=c["loan_seconds"],
                overdue=c["overdue"],
            )
            for (e, t, d), c in employees.items()
        )
        AccessByDay.objects.bulk_create(
            AccessByDay(bank=bank, day=d, granted=g, reason=r, taps=n) for d, g, r, n in access
        )


def _runs(days: Iterable[date]) -> Iterator[tuple[date, date]]:
    """Consecutive days collapsed into (first, last) runs."""
    ordered = sorted(set(days))
    if not ordered:
        return
    first = last = ordered[0]
    for day in ordered[1:]:
        if day == last + ONE_DAY:
            last = day
            continue
        yield first, last
        first = last = day
    yield first, last


def rebuild_report_rollups(
    first: date,
    last: date,
    *,
    banks: Iterable[LockerBank] | None = None,
    now: datetime | None = None,
) -> None:
    """Recompute the rollups of ``banks`` (all by default) for local days ``first``..``last``."""
    now = now or timezone.now()
    banks = banks if banks is not None else LockerBank.objects.select_related("site")
    for bank in banks:
        rebuild_bank(bank, first, last, now=now)


def rebuild_recent_rollups(now: datetime | None = None, days: int = NIGHTLY_DAYS) -> None:
    """Rebuild the last ``days`` local days of every bank (the nightly catch-all)."""
    now = now or timezone.now()
    for bank in LockerBank.objects.select_related("site"):
        today = now.astimezone(bank.site.tz).date()
        rebuild_bank(bank, today - timedelta(days=days - 1), today, now=now)


def _dirty_days(since: datetime, now: datetime) -> dict[int, set[date]]:
    """Per bank, the local days whose rollups may have changed since ``since``."""
    banks = {bank.pk: bank for bank in LockerBank.objects.select_related("site")}
    dirty: dict[int, set[date]] = defaultdict(set)

    def mark(bank_id: int, start: datetime, end: datetime) -> None:
        tz = banks[bank_id].site.tz
        day, last = start.astimezone(tz).date(), end.astimezone(tz).date()
        while day <= last:
            dirty[bank_id].add(day)
            day += ONE_DAY

    changed = (
        Checkout.objects.filter(taken_at__isnull=False)
        .filter(
            Q(reserved_at__gte=since - timedelta(hours=1), taken_at__gte=since)
            | Q(returned_at__gte=since)
            # Open loans grow every minute and may just have fallen due.
            | Q(status=Checkout.Status.ACTIVE)
        )
        .order_by()
        .values_list("slot_out__bank_id", "taken_at", "returned_at")
    )
    for bank_id, taken_at, returned_at in changed:
        mark(bank_id, taken_at, returned_at or now)
    taps = (
        AccessEvent.objects.filter(at__gte=since)
        .order_by()
        .values_list("bank_id")
        .annotate(first=Min("at"), last=Max("at"))
    )
    for bank_id, first, last in taps:
        mark(bank_id, first, last)
    return {bank_id: days for bank_id, days in dirty.items() if bank_id in banks}


def refresh_report_rollups(now: datetime | None = None) -> int:
    """Bring the rollups up to ``now``: rebuild every bank-day touched since the last refresh.

    The first run builds all history. Returns how many bank-day runs were rebuilt. Safe to run
    twice at once: the watermark row is locked for the whole refresh, so the second waits and
    then finds little or nothing left to do.
    """
    now = now or timezone.now()
    RollupWatermark.objects.get_or_create(pk=1)
    with transaction.atomic():
        mark = RollupWatermark.objects.select_for_update().get(pk=1)
        if mark.refreshed_until is None:
            earliest = Checkout.objects.aggregate(first=Min("taken_at"))["first"]
            first_tap = AccessEvent.objects.aggregate(first=Min("at"))["first"]
            since = min((t for t in (earliest, first_tap) if t is not None), default=now)
        else:
            since = mark.refreshed_until - REFRESH_SLACK
        rebuilt = 0
        banks = {bank.pk: bank for bank in LockerBank.objects.select_related("site")}
        for bank_id, days in _dirty_days(since, now).items():
            for first, last in _runs(days):
                rebuild_bank(banks[bank_id], first, last, now=now)
                rebuilt += 1
        mark.refreshed_until = now
        mark.save(update_fields=["refreshed_until"])
    logger.info("report rollups refreshed: %d bank-day runs", rebuilt)
    return rebuilt
