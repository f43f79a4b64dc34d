"""CSV import of employees, badges and shift assignments (HR page and ``import_csv``).

A file is imported whole or not at all: every row is validated and applied inside one
transaction, each in its own savepoint so one bad row cannot hide the next, and the whole
transaction is rolled back if any row failed, or if this is a dry run. A dry run therefore
runs exactly the code a real import runs, database constraints included.

Columns (a header row is required; column order is free; unknown columns are refused):

- employees: ``employee_number``, ``first_name`` required; ``last_name``, ``email``,
  ``department`` (by name; made when new), ``home_site`` (site name), ``external_id``.
  An existing employee number updates that employee.
- badges: ``employee_number``, ``uid`` required; ``technology``, ``valid_from``,
  ``valid_until`` (ISO 8601), ``temporary`` (yes/no), ``pin``.
- shifts: ``employee_number``, ``site``, ``shift`` (the shift's name at that site),
  ``valid_from`` required; ``valid_until`` (dates, YYYY-MM-DD).
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access import actions
from access.models import Badge, Employee, Shift
from devices.models import Site

MAX_ROWS = 20_000


class Kind(enum.StrEnum):
    EMPLOYEES = "employees"
    BADGES = "badges"
    SHIFTS = "shifts"


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did, or would have done, and every row it refused."""

    kind: Kind
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return not self.dry_run and not self.errors


class RowRefused(Exception):
    """One row that cannot be imported, with why."""


# --- Row forms: the shape of each row, before it reaches an action ---


class EmployeeRow(forms.Form):
    employee_number = forms.CharField(max_length=40)
    first_name = forms.CharField(max_length=80)
    last_name = forms.CharField(max_length=80, required=False)
    email = forms.EmailField(required=False)
    department = forms.CharField(max_length=120, required=False)
    home_site = forms.CharField(max_length=120, required=False)
    external_id = forms.CharField(max_length=200, required=False)

    def clean_home_site(self) -> Site | None:
        name = self.cleaned_data["home_site"]
        if not name:
            return None
        site = Site.objects.filter(name=name).first()
        if site is None:
            raise ValidationError(f"No site named {name!r}.")
        return site


class BadgeRow(forms.Form):
    employee_number = forms.CharField(max_length=40)
    uid = forms.CharField(max_length=40)
    technology = forms.ChoiceField(choices=Badge.Technology.choices, required=False)
    valid_from = forms.DateTimeField(required=False)
    valid_until = forms.DateTimeField(required=False)
    temporary = forms.CharField(required=False)
    pin = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start = data.get("valid_from") or timezone.now()
        if data.get("valid_until") and data["valid_until"] <= start:
            self.add_error("valid_until", "The expiry must come after the badge starts to work.")
        return data

    def clean_temporary(self) -> bool:
        value = self.cleaned_data["temporary"].strip().lower()
        if value in ("", "no", "false", "0", "n"):
            return False
        if value in ("yes", "true", "1", "y"):
            return True
        raise ValidationError("Write yes or no.")


class ShiftRow(forms.Form):
    employee_number = forms.CharField(max_length=40)
    site = forms.CharField(max_length=120)
    shift = forms.CharField(max_length=80)
    valid_from = forms.DateField()
    valid_until = forms.DateField(required=False)


# --- Applying one row: each returns True when it created something, False when it updated ---


def _employee(number: str) -> Employee:
    employee = Employee.objects.filter(employee_number=number).first()
    if employee is None:
        raise RowRefused(f"employee_number: no employee {number!r}.")
    return employee


def _apply_employee(data: dict[str, Any], actor: str) -> bool:
    existing = Employee.objects.filter(employee_number=data["employee_number"]).first()
    if existing is None:
        actions.create_employee(actor=actor, **data)
        return True
    actions.update_employee(existing, actor=actor, **data)
    return False


def _apply_badge(data: dict[str, Any], actor: str) -> bool:
    actions.issue_badge(
        _employee(data["employee_number"]),
        data["uid"],
        actor=actor,
        technology=data.get("technology") or Badge.Technology.ISO14443A,
        valid_from=data.get("valid_from"),
        valid_until=data.get("valid_until"),
        temporary=data.get("temporary", False),
        pin=data.get("pin") or None,
    )
    return True


def _apply_shift(data: dict[str, Any], actor: str) -> bool:
    shift = Shift.objects.filter(site__name=data["site"], name=data["shift"]).first()
    if shift is None:
        raise RowRefused(f"shift: no shift {data['shift']!r} at {data['site']!r}.")
    actions.assign_shift(
        _employee(data["employee_number"]),
        shift,
        valid_from=data["valid_from"],
        valid_until=data.get("valid_until"),
        actor=actor,
    )
    return True


@dataclass(frozen=True)
class Spec:
    form: type[forms.Form]
    apply: Callable[[dict[str, Any], str], bool]
    # Columns that identify a row: the same key twice in one file is refused.
    key: tuple[str, ...]


SPECS: dict[Kind, Spec] = {
    Kind.EMPLOYEES: Spec(EmployeeRow, _apply_employee, ("employee_number",)),
    Kind.BADGES: Spec(BadgeRow, _apply_badge, ("uid",)),
    Kind.SHIFTS: Spec(ShiftRow, _apply_shift, ("employee_number", "site", "shift", "valid_from")),
}


def columns(kind: Kind) -> tuple[list[str], list[str]]:
    """(required, optional) column names of a kind of file."""
    form = SPECS[kind].form()
    required = [name for name, f in form.fields.items() if f.required]
    optional = [name for name, f in form.fields.items() if not f.required]
    return required, optional


def _form_errors(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in form.errors.items())


def _action_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            return "; ".join(
                f"{name}: {' '.join(messages)}" if name != "__all__" else " ".join(messages)
                for name, messages in error.message_dict.items()
            )
        return " ".join(error.messages)
    if isinstance(error, IntegrityError):
        return "conflicts with data already recorded."
    return str(error)


def _normalised_key(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v).strip().upper() for v in values)


def import_csv(kind: Kind | str, text: str, *, actor: str, dry_run: bool = False) -> ImportReport:
    """Import one CSV file's text: all rows or none. See the module docstring for columns."""
    kind = Kind(kind)
    spec = SPECS[kind]
    report = ImportReport(kind=kind, dry_run=dry_run)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    required, optional = columns(kind)
    missing = [name for name in required if name not in header]
    unknown = [name for name in header if name not in required + optional]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s): {', '.join(unknown)}")
        report.errors.append(RowError(1, "; ".join(problems)))
        return report
    reader.fieldnames = header

    seen: dict[tuple[str, ...], int] = {}
    with transaction.atomic():
        for row in reader:
            line = reader.line_num
            report.rows += 1
            if report.rows > MAX_ROWS:
                report.errors.append(RowError(line, f"more than {MAX_ROWS} rows; split the file."))
                break
            if None in row:
                report.errors.append(RowError(line, "more fields than the header has columns."))
                continue
            values = {name: (value or "").strip() for name, value in row.items()}
            form = spec.form(values)
            if not form.is_valid():
                report.errors.append(RowError(line, _form_errors(form)))
                continue
            key = _normalised_key(values[name] for name in spec.key)
            if key in seen:
                report.errors.append(
                    RowError(line, f"the same row as line {seen[key]} ({', '.join(spec.key)}).")
                )
                continue
            seen[key] = line
            try:
                with transaction.atomic():
                    # Only the columns the file has: a column left out changes nothing.
                    data = {k: v for k, v in form.cleaned_data.items() if k in header}
                    created = spec.apply(data, actor)
            except (RowRefused, ValidationError, ValueError, IntegrityError) as error:
                report.errors.append(RowError(line, _action_error(error)))
                continue
            if created:
                report.created += 1
            else:
                report.updated += 1
        if report.rows == 0 and not report.errors:
            report.errors.append(RowError(1, "the file has a header but no rows."))
        if report.errors or dry_run:
            transaction.set_rollback(True)
    return report
