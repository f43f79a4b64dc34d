"""CSV import: all rows or none, a report line for every bad row, and a true dry run."""

from __future__ import annotations

from datetime import date
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from access.imports import Kind, import_csv
from access.models import Badge, Employee, ShiftAssignment
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import World

EMPLOYEES = """employee_number,first_name,last_name,email,department,home_site
E5001,Dana,Berg,dana@example.com,Warehouse,Test DC
E5002,Emil,Sand,,Returns,
"""


def test_a_clean_file_imports_every_row(world: World) -> None:
    report = import_csv(Kind.EMPLOYEES, EMPLOYEES, actor=SYSTEM)
    assert (report.applied, report.created, report.errors) == (True, 2, [])
    dana = Employee.objects.get(employee_number="E5001")
    assert (dana.department, dana.home_site) == (world.department, world.site)


def test_a_file_with_bad_rows_imports_nothing_and_reports_each(world: World) -> None:
    text = (
        "employee_number,first_name,email,home_site\n"
        "E5001,Dana,dana@example.com,Test DC\n"  # fine
        ",Nameless,,\n"  # line 3: no number
        "E5003,Finn,not-an-email,\n"  # line 4
        "E5004,Gus,,Atlantis\n"  # line 5: unknown site
        "E5001,Dana again,,\n"  # line 6: same number twice
    )
    before = (Employee.objects.count(), AuditEvent.objects.count())
    report = import_csv(Kind.EMPLOYEES, text, actor=SYSTEM)
    assert not report.applied
    assert [e.line for e in report.errors] == [3, 4, 5, 6]
    assert "employee_number" in report.errors[0].message
    assert "email" in report.errors[1].message
    assert "Atlantis" in report.errors[2].message
    assert "line 2" in report.errors[3].message
    assert (Employee.objects.count(), AuditEvent.objects.count()) == before


def test_an_error_only_the_database_finds_still_rolls_back_the_whole_file(world: World) -> None:
    # Both UIDs pass the row form; the second is already active on Ana's badge.
    text = f"employee_number,uid\nE1001,0A0B0C0D\nE1001,{world.ana_badge.uid}\n"
    report = import_csv(Kind.BADGES, text, actor=SYSTEM)
    assert [e.line for e in report.errors] == [3]
    assert not Badge.objects.filter(uid="0A0B0C0D").exists()


def test_a_dry_run_checks_everything_and_saves_nothing(world: World) -> None:
    report = import_csv(Kind.EMPLOYEES, EMPLOYEES, actor=SYSTEM, dry_run=True)
    assert (report.errors, report.created, report.applied) == ([], 2, False)
    assert not Employee.objects.filter(employee_number__startswith="E5").exists()


def test_a_missing_or_unknown_column_is_reported_on_line_one(world: World) -> None:
    report = import_csv(Kind.EMPLOYEES, "employee_number,shoe_size\nE1,44\n", actor=SYSTEM)
    assert len(report.errors) == 1
    assert report.errors[0].line == 1
    assert "first_name" in report.errors[0].message
    assert "shoe_size" in report.errors[0].message


def test_an_existing_employee_is_updated_and_absent_columns_are_kept(world: World) -> None:
    report = import_csv(Kind.EMPLOYEES, "employee_number,first_name\nE1001,Anna\n", actor=SYSTEM)
    assert (report.created, report.updated) == (0, 1)
    world.ana.refresh_from_db()
    assert (world.ana.first_name, world.ana.department) == ("Anna", world.department)


def test_badges_and_shift_assignments_import(world: World, at_wednesday_10am) -> None:
    import_csv(Kind.EMPLOYEES, EMPLOYEES, actor=SYSTEM)
    badges = (
        "employee_number,uid,temporary,valid_until,pin\n"
        "E5001,04:11:22:33,no,,\n"
        "E5002,04:44:55:66,yes,2026-04-01T00:00:00+02:00,1234\n"
    )
    assert import_csv(Kind.BADGES, badges, actor=SYSTEM).applied
    temporary = Badge.objects.get(uid="04445566")
    assert temporary.is_temporary
    assert temporary.check_pin("1234")
    shifts = (
        "employee_number,site,shift,valid_from,valid_until\n"
        "E5001,Test DC,Day,2026-03-01,\n"
        "E5002,Test DC,Night,2026-03-01,2026-06-30\n"
    )
    assert import_csv(Kind.SHIFTS, shifts, actor=SYSTEM).applied
    assert ShiftAssignment.objects.get(employee__employee_number="E5002").valid_until == date(
        2026, 6, 30
    )


def test_an_expiry_in_the_past_is_a_bad_row(world: World, at_wednesday_10am) -> None:
    text = "employee_number,uid,valid_until\nE1001,0A0A0A0B,2026-03-01T00:00:00+01:00\n"
    report = import_csv(Kind.BADGES, text, actor=SYSTEM)
    assert [(e.line, "valid_until" in e.message) for e in report.errors] == [(2, True)]


def test_a_temporary_badge_without_expiry_is_a_bad_row(world: World) -> None:
    report = import_csv(
        Kind.BADGES, "employee_number,uid,temporary\nE1001,0A0A0A0B,yes\n", actor=SYSTEM
    )
    assert report.errors[0].line == 2
    assert "expiry" in report.errors[0].message


def test_the_command_reports_bad_rows_and_fails(world: World, tmp_path: Path) -> None:
    path = tmp_path / "shifts.csv"
    path.write_text("employee_number,site,shift,valid_from\nE1001,Test DC,Gamma,2026-03-01\n")
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_csv", "shifts", str(path), stderr=err)
    assert "line 2: shift: no shift 'Gamma'" in err.getvalue()


def test_the_command_dry_run_saves_nothing(world: World, tmp_path: Path) -> None:
    path = tmp_path / "employees.csv"
    path.write_text(EMPLOYEES, encoding="utf-8-sig")
    out = StringIO()
    call_command("import_csv", "employees", str(path), "--dry-run", stdout=out)
    assert "would create 2" in out.getvalue()
    assert not Employee.objects.filter(employee_number="E5001").exists()
    call_command("import_csv", "employees", str(path), stdout=out)
    assert Employee.objects.filter(employee_number="E5001").exists()
