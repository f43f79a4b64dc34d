"""Read-side questions about access: shift windows, applicable rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from access.models import Badge, Employee, Shift, ShiftAssignment, normalize_uid


def assignments_around(employee: Employee, now: datetime) -> list[ShiftAssignment]:
    """Assignments that may hold a shift window around ``now`` (yesterday to tomorrow, UTC-wide)."""
    day = now.date()
    return list(
        ShiftAssignment.objects.filter(employee=employee)
        .filter(valid_from__lte=day + timedelta(days=2))
        .exclude(valid_until__lt=day - timedelta(days=2))
        .select_related("shift__site")
    )


def shift_window(
    assignments: list[ShiftAssignment], now: datetime, before: timedelta, after: timedelta
) -> tuple[Shift, datetime, datetime] | None:
    """The assigned shift occurrence whose window (with grace) holds ``now``, if any.

    An assignment counts for an occurrence that *starts* on a day within its validity, read in
    the shift's site time zone; of several matches the one ending last wins (a later due time).
    """
    best: tuple[Shift, datetime, datetime] | None = None
    for assignment in assignments:
        shift = assignment.shift
        tz = shift.site.tz
        window = shift.window_at(now, tz, before, after)
        if window is None:
            continue
        start_day = window[0].astimezone(tz).date()
        if start_day < assignment.valid_from or (
            assignment.valid_until and start_day > assignment.valid_until
        ):
            continue
        if best is None or window[1] > best[2]:
            best = (shift, window[0], window[1])
    return best


def search_employees(text: str = "", status: str = "") -> QuerySet[Employee]:
    """Employees matching ``text`` in name, number, department or a badge UID, best known first.

    Each row carries ``active_badges`` (a count) and its department, so a page of results costs
    one query however many people it shows.
    """
    employees = Employee.objects.select_related("department").annotate(
        active_badges=Count("badges", filter=Q(badges__status=Badge.Status.ACTIVE))
    )
    if status:
        employees = employees.filter(status=status)
    for word in text.split():
        match = (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(employee_number__icontains=word)
            | Q(department__name__icontains=word)
        )
        uid = normalize_uid(word)
        # A UID is hex: only a word that is hex (with the separators readers print) can be one.
        if len(uid) >= 4 and len(uid) == len(word.replace(":", "").replace("-", "")):
            match |= Exists(Badge.objects.filter(employee=OuterRef("pk"), uid__contains=uid))
        employees = employees.filter(match)
    return employees.order_by("last_name", "first_name", "employee_number")
