"""Read-side questions about access. (Shift windows and the rules that hold at a bank are read
for decisions by ``access.snapshot_builder``.)"""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from access.models import Badge, Employee, normalize_uid

_HEX = frozenset("0123456789ABCDEF")


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
        if len(uid) >= 4 and set(uid) <= _HEX:
            match |= Exists(Badge.objects.filter(employee=OuterRef("pk"), uid__contains=uid))
        employees = employees.filter(match)
    return employees.order_by("last_name", "first_name", "employee_number")
