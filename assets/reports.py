"""Utilization reports for facility managers: one function per report, each taking a ReportFilter.

Every report reads the per-day rollups of ``assets.rollups`` (or, for charge faults, the small
alert table), never the raw checkout and tap history, so its cost grows with the number of
banks and days, not with the number of loans. Days are each site's own local days. Each
function returns a :class:`Report`: columns, plain-dict rows (what the table, the CSV export and
the API show) and a few summary figures. The definitions are written down in docs/reports.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db.models import BigIntegerField, Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from access.models import Employee, Reason
from assets.models import (
    AccessByDay,
    Asset,
    AssetType,
    AssetUsageByDay,
    Checkout,
    EmployeeUsageByDay,
    LoanLengthByDay,
    SlotUsageByDay,
    TakesByHour,
    UsageByDay,
)
from assets.rollups import local_midnight
from devices.models import LockerBank, Site, Slot
from lockerhub.models import Alert

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_MARGIN = 0.2
DEFAULT_TOP_USERS = 20
DEFAULT_IDLE_MAX_TAKES = 2
RIGHT_SIZING_PERCENTILE = 95


@dataclass(frozen=True)
class ReportFilter:
    """What a report covers: local days ``start``..``end`` (inclusive) and optionally one site,
    bank and asset type. Days are read in each bank's site time zone."""

    start: date
    end: date
    site: Site | None = None
    bank: LockerBank | None = None
    asset_type: AssetType | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range(self.days)]

    def banks(self) -> QuerySet[LockerBank]:
        banks = LockerBank.objects.select_related("site").order_by("site__name", "code")
        if self.bank is not None:
            return banks.filter(pk=self.bank.pk)
        if self.site is not None:
            return banks.filter(site=self.site)
        return banks

    def rollups(self, queryset: QuerySet, *, typed: bool = True) -> QuerySet:
        """``queryset`` (a rollup table) narrowed to the filter's days, place and type."""
        queryset = queryset.filter(day__gte=self.start, day__lte=self.end).order_by()
        if self.bank is not None:
            queryset = queryset.filter(bank=self.bank)
        elif self.site is not None:
            queryset = queryset.filter(bank__site=self.site)
        if typed and self.asset_type is not None:
            queryset = queryset.filter(asset_type=self.asset_type)
        return queryset

    def period_seconds(self, site: Site) -> float:
        """Length of the filter's days at ``site``: 23 or 25 hours on a daylight-saving change."""
        tz = site.tz
        return (
            local_midnight(self.end + timedelta(days=1), tz) - local_midnight(self.start, tz)
        ).total_seconds()


@dataclass(frozen=True)
class Column:
    key: str
    label: str


@dataclass
class Report:
    """A report's answer: a table (columns and rows of plain values) and summary figures."""

    slug: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _percent(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _columns(*pairs: tuple[str, str]) -> list[Column]:
    return [Column(key, label) for key, label in pairs]


# --- Usage over time ---


def takes_per_day(f: ReportFilter) -> Report:
    """Devices taken on each local day of the period (days without a take show 0)."""
    counts = dict(
        f.rollups(UsageByDay.objects)
        .values_list("day")
        .annotate(n=Sum("takes"))
        .values_list("day", "n")
    )
    rows = [{"day": day, "takes": counts.get(day, 0)} for day in f.each_day()]
    total = sum(row["takes"] for row in rows)
    busiest = max(rows, key=lambda row: row["takes"]) if total else None
    return Report(
        "takes-per-day",
        "Takes per day",
        _columns(("day", "Day"), ("takes", "Takes")),
        rows,
        {
            "total_takes": total,
            "mean_per_day": round(total / f.days, 1),
            "busiest_day": busiest["day"] if busiest else None,
        },
    )


def hour_of_week(f: ReportFilter) -> Report:
    """Takes per local weekday and hour, summed over the period: the heat map."""
    grid = [[0] * 24 for _ in WEEKDAYS]
    cells = f.rollups(TakesByHour.objects).values_list("day", "hour").annotate(n=Sum("takes"))
    for day, hour, n in cells:
        grid[day.weekday()][hour] += n
    rows = [
        {"weekday": name, **{f"h{hour:02d}": grid[i][hour] for hour in range(24)}}
        for i, name in enumerate(WEEKDAYS)
    ]
    peak = max(
        ((grid[i][hour], i, hour) for i in range(7) for hour in range(24)), default=(0, 0, 0)
    )
    return Report(
        "hour-of-week",
        "Takes by hour of the week",
        [Column("weekday", "Day"), *(Column(f"h{h:02d}", f"{h:02d}") for h in range(24))],
        rows,
        {
            "busiest_hour": f"{WEEKDAYS[peak[1]]} {peak[2]:02d}:00" if peak[0] else None,
            "busiest_hour_takes": peak[0],
        },
    )


# --- Capacity ---


def _home_banks() -> Subquery:
    """Where an asset lives: the bank of the slot it sits in, or the one it was taken from."""
    out_from = Checkout.objects.filter(asset=OuterRef("pk"), status=Checkout.Status.ACTIVE).values(
        "slot_out__bank_id"
    )[:1]
    return Coalesce(F("slot__bank_id"), Subquery(out_from), output_field=BigIntegerField())


def _assets_in_scope(f: ReportFilter) -> QuerySet[Asset]:
    assets = (
        Asset.objects.exclude(status=Asset.Status.RETIRED)
        .annotate(home_bank_id=_home_banks())
        .order_by()
    )
    if f.asset_type is not None:
        assets = assets.filter(asset_type=f.asset_type)
    if f.bank is not None:
        assets = assets.filter(home_bank_id=f.bank.pk)
    elif f.site is not None:
        assets = assets.filter(home_bank_id__in=LockerBank.objects.filter(site=f.site).values("pk"))
    return assets


def peak_concurrency(f: ReportFilter) -> Report:
    """Per bank: the most devices out at one instant during the period, against its slots."""
    peak_field = "peak" if f.asset_type is not None else "bank_peak"
    daily = (
        f.rollups(UsageByDay.objects)
        .values_list("bank_id", "day")
        .annotate(p=Max(peak_field))
        .order_by("bank_id", "day")
    )
    best: dict[int, tuple[int, date]] = {}
    for bank_id, day, peak in daily:
        if peak > best.get(bank_id, (0, day))[0]:
            best[bank_id] = (peak, day)
    banks = list(f.banks().annotate(slot_count=Count("slots")))
    assets = dict(
        _assets_in_scope(f)
        .values_list("home_bank_id")
        .annotate(n=Count("pk"))
        .values_list("home_bank_id", "n")
    )
    rows = []
    for bank in banks:
        peak, day = best.get(bank.pk, (0, None))
        rows.append(
            {
                "site": bank.site.name,
                "bank": bank.code,
                "slots": bank.slot_count,
                "assets": assets.get(bank.pk, 0),
                "peak": peak,
                "peak_day": day,
                "peak_share_of_slots": _percent(peak, bank.slot_count),
            }
        )
    return Report(
        "peaks",
        "Peak concurrent checkouts",
        _columns(
            ("site", "Site"),
            ("bank", "Bank"),
            ("slots", "Slots"),
            ("assets", "Assets"),
            ("peak", "Peak out at once"),
            ("peak_day", "Peak day"),
            ("peak_share_of_slots", "Peak as % of slots"),
        ),
        rows,
        {"highest_peak": max((row["peak"] for row in rows), default=0)},
    )


def right_sizing(f: ReportFilter, margin: float = DEFAULT_MARGIN) -> Report:
    """How many assets of each type each bank needs to serve its peak with ``margin`` to spare.

    needed = ceil(p95 of the daily peaks * (1 + margin)), where the daily peaks are the most
    devices of the type out at once on each day of the period (days without use count as 0)
    and p95 is the nearest-rank 95th percentile.
    """
    peaks: dict[tuple[int, int], list[int]] = defaultdict(list)
    for bank_id, type_id, peak in f.rollups(UsageByDay.objects).values_list(
        "bank_id", "asset_type_id", "peak"
    ):
        peaks[(bank_id, type_id)].append(peak)
    have = {
        (bank_id, type_id): n
        for bank_id, type_id, n in _assets_in_scope(f)
        .filter(home_bank_id__isnull=False)
        .values_list("home_bank_id", "asset_type_id")
        .annotate(n=Count("pk"))
    }
    banks = {bank.pk: bank for bank in f.banks()}
    types = {t.pk: t for t in AssetType.objects.all()}
    rows = []
    for bank_id, type_id in sorted(
        set(peaks) | set(have),
        key=lambda key: (banks[key[0]].site.name, banks[key[0]].code, types[key[1]].name),
    ):
        daily = sorted(peaks.get((bank_id, type_id), []))
        daily = [0] * (f.days - len(daily)) + daily
        rank = math.ceil(RIGHT_SIZING_PERCENTILE / 100 * len(daily))
        p95 = daily[rank - 1]
        needed = math.ceil(round(p95 * (1 + margin), 9))
        current = have.get((bank_id, type_id), 0)
        rows.append(
            {
                "site": banks[bank_id].site.name,
                "bank": banks[bank_id].code,
                "asset_type": types[type_id].name,
                "max_peak": daily[-1],
                "p95_peak": p95,
                "needed": needed,
                "current": current,
                "change": needed - current,
            }
        )
    return Report(
        "right-sizing",
        "Right-sizing",
        _columns(
            ("site", "Site"),
            ("bank", "Bank"),
            ("asset_type", "Asset type"),
            ("max_peak", "Highest daily peak"),
            ("p95_peak", "95th percentile daily peak"),
            ("needed", "Needed"),
            ("current", "Current"),
            ("change", "Change"),
        ),
        rows,
        {"margin": margin, "percentile": RIGHT_SIZING_PERCENTILE},
        [
            f"Needed = ceil(p{RIGHT_SIZING_PERCENTILE} of daily peaks × (1 + {margin:g})); "
            "days without use count as 0."
        ],
    )


# --- Loans ---


def _median(histogram: dict[int, int]) -> float | None:
    """Median of values given as {value: count}; the mean of the two middle ones when even."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]
    found: list[int] = []
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        while wanted and wanted[0] < seen:
            found.append(value)
            wanted.pop(0)
    return (found[0] + found[1]) / 2


def checkout_length(f: ReportFilter) -> Report:
    """Mean and median loan length (taken → returned) per asset type, loans taken in the period."""
    sums = {
        type_id: (returned, seconds)
        for type_id, returned, seconds in f.rollups(UsageByDay.objects)
        .values_list("asset_type_id")
        .annotate(r=Sum("returned"), s=Sum("loan_seconds"))
    }
    histograms: dict[int | None, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for type_id, minutes, loans in (
        f.rollups(LoanLengthByDay.objects)
        .values_list("asset_type_id", "minutes")
        .annotate(n=Sum("loans"))
    ):
        histograms[type_id][minutes] += loans
        histograms[None][minutes] += loans
    types = AssetType.objects.filter(pk__in=list(sums)).order_by("name")
    rows = []

    def row(label: str, returned: int, seconds: int, histogram: dict[int, int]) -> dict:
        return {
            "asset_type": label,
            "returned": returned,
            "mean_minutes": round(seconds / returned / 60, 1) if returned else None,
            "median_minutes": _median(histogram),
        }

    for asset_type in types:
        returned, seconds = sums[asset_type.pk]
        rows.append(row(asset_type.name, returned, seconds, histograms[asset_type.pk]))
    all_returned = sum(r for r, _ in sums.values())
    all_seconds = sum(s for _, s in sums.values())
    if len(rows) > 1:
        rows.append(row("All types", all_returned, all_seconds, histograms[None]))
    return Report(
        "checkout-length",
        "Checkout length",
        _columns(
            ("asset_type", "Asset type"),
            ("returned", "Returned loans"),
            ("mean_minutes", "Mean (minutes)"),
            ("median_minutes", "Median (minutes)"),
        ),
        rows,
        {
            "mean_minutes": round(all_seconds / all_returned / 60, 1) if all_returned else None,
            "median_minutes": _median(histograms[None]),
        },
        ["Median in whole minutes (each loan's length rounded down)."],
    )


def overdue_rate(f: ReportFilter) -> Report:
    """Share of the period's loans returned after their due time or still out past it."""
    cells = (
        f.rollups(UsageByDay.objects)
        .values_list("bank__code", "asset_type__name")
        .annotate(t=Sum("takes"), o=Sum("overdue"))
        .order_by("bank__code", "asset_type__name")
    )
    rows = [
        {
            "bank": bank,
            "asset_type": type_name,
            "takes": takes,
            "overdue": overdue,
            "overdue_rate": _percent(overdue, takes),
        }
        for bank, type_name, takes, overdue in cells
        if takes
    ]
    takes = sum(row["takes"] for row in rows)
    overdue = sum(row["overdue"] for row in rows)
    return Report(
        "overdue-rate",
        "Overdue rate",
        _columns(
            ("bank", "Bank"),
            ("asset_type", "Asset type"),
            ("takes", "Takes"),
            ("overdue", "Overdue"),
            ("overdue_rate", "Overdue %"),
        ),
        rows,
        {"takes": takes, "overdue": overdue, "overdue_rate": _percent(overdue, takes)},
    )


def top_users(f: ReportFilter, limit: int = DEFAULT_TOP_USERS) -> Report:
    """The employees who took the most devices in the period (ties: the one on record first)."""
    # Aggregate on the key alone and name only the winners: grouping a year of rows by joined
    # name columns costs several times more.
    ranked = list(
        f.rollups(EmployeeUsageByDay.objects)
        .values_list("employee_id")
        .annotate(t=Sum("takes"), s=Sum("loan_seconds"), o=Sum("overdue"))
        .order_by("-t", "employee_id")[:limit]
    )
    people = Employee.objects.in_bulk([employee_id for employee_id, *_ in ranked])
    rows = [
        {
            "employee_number": people[employee_id].employee_number,
            "name": people[employee_id].full_name,
            "takes": takes,
            "loan_hours": round(seconds / 3600, 1),
            "overdue": overdue,
        }
        for employee_id, takes, seconds, overdue in ranked
    ]
    return Report(
        "top-users",
        "Top users",
        _columns(
            ("employee_number", "Employee number"),
            ("name", "Name"),
            ("takes", "Takes"),
            ("loan_hours", "Hours out (returned loans)"),
            ("overdue", "Overdue"),
        ),
        rows,
        {"limit": limit},
    )


# --- Slots and assets ---


def slot_utilization(f: ReportFilter) -> Report:
    """Per slot: takes from it and the share of the period its device was out."""
    usage = {
        slot_id: (takes, busy)
        for slot_id, takes, busy in f.rollups(SlotUsageByDay.objects)
        .values_list("slot_id")
        .annotate(t=Sum("takes"), b=Sum("busy_seconds"))
    }
    slots = Slot.objects.filter(bank__in=f.banks().values("pk")).select_related("bank__site")
    if f.asset_type is not None:
        slots = slots.filter(Q(pk__in=list(usage)) | Q(asset__asset_type=f.asset_type))
    periods: dict[int, float] = {}
    rows = []
    for slot in slots.order_by("bank__code", "number"):
        site = slot.bank.site
        if site.pk not in periods:
            periods[site.pk] = f.period_seconds(site)
        takes, busy = usage.get(slot.pk, (0, 0))
        rows.append(
            {
                "bank": slot.bank.code,
                "slot": slot.number,
                "takes": takes,
                "hours_out": round(busy / 3600, 1),
                "utilization": _percent(busy, periods[site.pk]),
            }
        )
    return Report(
        "slot-utilization",
        "Utilization per slot",
        _columns(
            ("bank", "Bank"),
            ("slot", "Slot"),
            ("takes", "Takes"),
            ("hours_out", "Hours out"),
            ("utilization", "Utilization %"),
        ),
        rows,
        {"slots": len(rows)},
        ["Utilization = time the device taken from the slot was out ÷ length of the period."],
    )


def idle_assets(f: ReportFilter, max_takes: int = DEFAULT_IDLE_MAX_TAKES) -> Report:
    """Assets taken ``max_takes`` times or fewer in the period (never-taken ones first)."""
    takes = dict(
        f.rollups(AssetUsageByDay.objects, typed=False)
        .values_list("asset_id")
        .annotate(t=Sum("takes"))
        .values_list("asset_id", "t")
    )
    last_taken = (
        AssetUsageByDay.objects.filter(asset=OuterRef("pk"), takes__gt=0)
        .order_by("-day")
        .values("day")[:1]
    )
    assets = (
        _assets_in_scope(f)
        .annotate(last_taken=Subquery(last_taken))
        .select_related("asset_type")
        .order_by("asset_tag")
    )
    bank_codes = dict(LockerBank.objects.values_list("pk", "code"))
    rows = []
    for asset in assets:
        n = takes.get(asset.pk, 0)
        if n > max_takes:
            continue
        rows.append(
            {
                "asset_tag": asset.asset_tag,
                "asset_type": asset.asset_type.name,
                "status": asset.get_status_display(),
                "bank": bank_codes.get(asset.home_bank_id, ""),
                "takes": n,
                "last_taken": asset.last_taken,
            }
        )
    rows.sort(key=lambda row: (row["takes"], row["last_taken"] or date.min, row["asset_tag"]))
    return Report(
        "idle-assets",
        "Idle assets",
        _columns(
            ("asset_tag", "Asset tag"),
            ("asset_type", "Asset type"),
            ("status", "Status"),
            ("bank", "Bank"),
            ("takes", "Takes in period"),
            ("last_taken", "Last taken"),
        ),
        rows,
        {"max_takes": max_takes, "never_taken": sum(1 for row in rows if not row["takes"])},
    )


# --- Taps and faults ---


def denied_taps(f: ReportFilter) -> Report:
    """Denied badge taps per reason code (the asset type filter does not apply: a tap has none)."""
    counts = (
        f.rollups(AccessByDay.objects, typed=False)
        .values_list("granted", "reason")
        .annotate(n=Sum("taps"))
    )
    denied: dict[str, int] = {}
    granted = 0
    for is_granted, reason, n in counts:
        if is_granted:
            granted += n
        else:
            denied[reason] = denied.get(reason, 0) + n
    total_denied = sum(denied.values())
    labels = dict(Reason.choices)
    rows = [
        {
            "reason": reason,
            "label": labels.get(reason, reason),
            "taps": n,
            "share": _percent(n, total_denied),
        }
        for reason, n in sorted(denied.items(), key=lambda item: (-item[1], item[0]))
    ]
    return Report(
        "denied-taps",
        "Denied taps by reason",
        _columns(
            ("reason", "Code"), ("label", "Reason"), ("taps", "Taps"), ("share", "% of denied")
        ),
        rows,
        {
            "taps": granted + total_denied,
            "denied": total_denied,
            "denied_share": _percent(total_denied, granted + total_denied),
        },
    )


def charge_faults(f: ReportFilter) -> Report:
    """Charge-fault alerts raised per slot in the period (the asset type filter does not apply)."""
    sites = (
        [f.bank.site]
        if f.bank is not None
        else [f.site]
        if f.site is not None
        else list(Site.objects.all())
    )
    when = Q(pk__in=[])
    for site in sites:
        when |= Q(
            bank__site=site,
            opened_at__gte=local_midnight(f.start, site.tz),
            opened_at__lt=local_midnight(f.end + timedelta(days=1), site.tz),
        )
    alerts = Alert.objects.filter(when, kind=Alert.Kind.CHARGE_FAULT).order_by()
    if f.bank is not None:
        alerts = alerts.filter(bank=f.bank)
    counts = alerts.values_list("bank__code", "slot__number").annotate(n=Count("pk"))
    rows = [
        # A slot deleted since keeps its faults, under no door number.
        {"bank": code, "slot": number, "faults": n}
        for code, number, n in sorted(
            counts, key=lambda row: (-row[2], row[0], row[1] is None, row[1] or 0)
        )
    ]
    return Report(
        "charge-faults",
        "Charge faults per slot",
        _columns(("bank", "Bank"), ("slot", "Slot"), ("faults", "Faults")),
        rows,
        {"faults": sum(row["faults"] for row in rows)},
    )


@dataclass(frozen=True)
class ReportSpec:
    """One report as the pages and the API offer it."""

    slug: str
    title: str
    description: str
    build: Callable[..., Report]
    options: tuple[str, ...] = ()


REPORTS: dict[str, ReportSpec] = {
    spec.slug: spec
    for spec in (
        ReportSpec("takes-per-day", "Takes per day", "Devices taken each day.", takes_per_day),
        ReportSpec(
            "hour-of-week",
            "Hour-of-week heat map",
            "When devices are taken, by weekday and hour.",
            hour_of_week,
        ),
        ReportSpec(
            "peaks",
            "Peak concurrent checkouts",
            "The most devices out at once per bank, against its slots.",
            peak_concurrency,
        ),
        ReportSpec(
            "checkout-length",
            "Checkout length",
            "Mean and median loan length per asset type.",
            checkout_length,
        ),
        ReportSpec(
            "overdue-rate", "Overdue rate", "Loans returned late or still out late.", overdue_rate
        ),
        ReportSpec("denied-taps", "Denied taps", "Badge taps refused, by reason.", denied_taps),
        ReportSpec(
            "charge-faults",
            "Charge faults",
            "Charge-fault alerts per slot.",
            charge_faults,
        ),
        ReportSpec(
            "slot-utilization",
            "Slot utilization",
            "How much of the time each slot's device was out.",
            slot_utilization,
        ),
        ReportSpec(
            "idle-assets",
            "Idle assets",
            "Assets never or rarely taken.",
            idle_assets,
            ("max_takes",),
        ),
        ReportSpec("top-users", "Top users", "Who takes the most devices.", top_users, ("limit",)),
        ReportSpec(
            "right-sizing",
            "Right-sizing",
            "How many assets each bank needs to serve its peak with a margin.",
            right_sizing,
            ("margin",),
        ),
    )
}
