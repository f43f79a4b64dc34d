"""Shift assignments and slot stocking written in the Django admin go through the actions:
audited under the name of the staff member who saved, refusals are form errors or error
messages that change nothing, and what only the bank reports (or the history needs) cannot be
edited or deleted there."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

import access.admin
import devices.admin
from access.models import Employee, ShiftAssignment
from assets.models import Asset, Checkout, Reservation
from devices import actions as device_actions
from devices.models import Slot
from lockerhub import audit
from lockerhub.models import AuditEvent
from tests.admin_pages import audited, form_errors, messages_of, slot_form, url
from tests.conftest import World, at_admin, make_employee

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic

# WEDNESDAY_10AM's date: Ana has worked the day shift since 2026-01-01.
TODAY = date(2026, 3, 11)
YESTERDAY = TODAY - timedelta(days=1)


def iso(day: date | None) -> str:
    return day.isoformat() if day else ""


# --- Shift assignments ---


@pytest.fixture
def hr(hr_officer: User) -> Client:
    return at_admin(hr_officer)


@pytest.fixture
def ana_on_days(world: World) -> ShiftAssignment:
    return ShiftAssignment.objects.get(employee=world.ana, shift=world.day_shift)


def test_an_assignment_added_in_the_admin_is_audited_under_the_staff_members_name(
    world: World, hr: Client, hr_officer: User, at_wednesday_10am
) -> None:
    bo = make_employee("E1002", "Bo", world.department, site=world.site)

    response = hr.post(
        url(ShiftAssignment, "add"),
        {
            "employee": str(bo.pk),
            "shift": str(world.night_shift.pk),
            "valid_from": "2026-03-16",
            "valid_until": "",
        },
    )

    assert response.status_code == 302, form_errors(response)
    assignment = ShiftAssignment.objects.get(employee=bo)
    assert (assignment.shift, assignment.valid_from) == (world.night_shift, date(2026, 3, 16))
    [(actor, subject, data)] = audited("shift.assigned")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(assignment.pk))
    assert data["valid_from"] == "2026-03-16"
    assert LogEntry.objects.get(object_id=str(assignment.pk)).is_addition()


def test_an_overlapping_assignment_is_a_form_error_and_changes_nothing(
    world: World, hr: Client, at_wednesday_10am
) -> None:
    before = (ShiftAssignment.objects.count(), AuditEvent.objects.count())

    response = hr.post(
        url(ShiftAssignment, "add"),
        {
            "employee": str(world.ana.pk),
            "shift": str(world.day_shift.pk),
            "valid_from": "2026-03-16",
            "valid_until": "2026-03-20",
        },
    )

    assert "already on Day" in " ".join(form_errors(response)["shift"])
    assert (ShiftAssignment.objects.count(), AuditEvent.objects.count()) == before


def test_no_assignment_for_an_offboarded_employee(
    world: World, hr: Client, at_wednesday_10am
) -> None:
    Employee.objects.filter(pk=world.ana.pk).update(status=Employee.Status.OFFBOARDED)

    response = hr.post(
        url(ShiftAssignment, "add"),
        {
            "employee": str(world.ana.pk),
            "shift": str(world.night_shift.pk),
            "valid_from": "2026-03-16",
            "valid_until": "",
        },
    )

    assert "offboarded" in " ".join(form_errors(response)["employee"])
    assert not ShiftAssignment.objects.filter(shift=world.night_shift).exists()


def test_moving_an_assignments_dates_audits_old_and_new(
    world: World, hr: Client, hr_officer: User, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    response = hr.post(
        url(ShiftAssignment, "change", ana_on_days.pk),
        {
            "valid_from": iso(ana_on_days.valid_from),
            "valid_until": "2026-06-30",
            # Shown read-only: posting another person or shift is ignored.
            "employee": str(make_employee("E1003", "Cy", None).pk),
            "shift": str(world.night_shift.pk),
        },
    )

    assert response.status_code == 302, form_errors(response)
    ana_on_days.refresh_from_db()
    assert (ana_on_days.employee, ana_on_days.shift) == (world.ana, world.day_shift)
    assert ana_on_days.valid_until == date(2026, 6, 30)
    [(actor, subject, data)] = audited("shift.assignment_changed")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(ana_on_days.pk))
    assert data == {"employee": "E1001", "shift": "Day", "valid_until": [None, "2026-06-30"]}


def test_saving_the_same_dates_audits_nothing(
    hr: Client, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    before = AuditEvent.objects.count()
    response = hr.post(
        url(ShiftAssignment, "change", ana_on_days.pk),
        {"valid_from": iso(ana_on_days.valid_from), "valid_until": ""},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.count() == before


def test_a_last_day_before_the_first_is_a_form_error_and_changes_nothing(
    hr: Client, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    before = AuditEvent.objects.count()

    response = hr.post(
        url(ShiftAssignment, "change", ana_on_days.pk),
        {"valid_from": iso(ana_on_days.valid_from), "valid_until": "2025-12-31"},
    )

    assert "before the first" in " ".join(form_errors(response)["valid_until"])
    ana_on_days.refresh_from_db()
    assert ana_on_days.valid_until is None
    assert AuditEvent.objects.count() == before


def test_moving_dates_onto_another_assignment_of_the_same_shift_is_refused(
    world: World, hr: Client, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    ShiftAssignment.objects.filter(pk=ana_on_days.pk).update(valid_until=date(2026, 3, 31))
    ShiftAssignment.objects.create(
        employee=world.ana, shift=world.day_shift, valid_from=date(2026, 5, 1)
    )
    before = AuditEvent.objects.count()

    response = hr.post(
        url(ShiftAssignment, "change", ana_on_days.pk),
        {"valid_from": iso(ana_on_days.valid_from), "valid_until": "2026-06-30"},
    )

    # The shift is shown, not a form field, so the refusal heads the form.
    assert "already on Day" in " ".join(form_errors(response)["__all__"])
    ana_on_days.refresh_from_db()
    assert ana_on_days.valid_until == date(2026, 3, 31)
    assert AuditEvent.objects.count() == before


def test_a_refusal_only_the_action_sees_is_an_error_message_not_a_server_error(
    world: World, hr: Client, at_wednesday_10am, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if another change won a race after the form was checked: only the action refuses.
    monkeypatch.setattr(access.admin.ShiftAssignmentForm, "clean", lambda form: form.cleaned_data)
    before = (ShiftAssignment.objects.count(), AuditEvent.objects.count(), LogEntry.objects.count())
    add = url(ShiftAssignment, "add")

    response = hr.post(
        add,
        {
            "employee": str(world.ana.pk),
            "shift": str(world.day_shift.pk),
            "valid_from": "2026-03-16",
            "valid_until": "",
        },
    )

    assert (response.status_code, response["Location"]) == (302, add)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "already on Day" in text
    after = (ShiftAssignment.objects.count(), AuditEvent.objects.count(), LogEntry.objects.count())
    assert after == before


def test_deleting_an_assignment_that_has_started_ends_it_yesterday(
    hr: Client, hr_officer: User, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    response = hr.post(url(ShiftAssignment, "delete", ana_on_days.pk), {"post": "yes"})

    assert (response.status_code, response["Location"]) == (
        302,
        url(ShiftAssignment, "changelist"),
    )
    ana_on_days.refresh_from_db()
    assert ana_on_days.valid_until == YESTERDAY
    assert [(a, s) for a, s, _ in audited("shift.ended")] == [
        (audit.actor_for_user(hr_officer), str(ana_on_days.pk))
    ]
    [(level, text)] = messages_of(response)
    assert level == "success"
    assert "stays on record" in text
    # The admin's own history says it changed, not that it went.
    [entry] = LogEntry.objects.filter(object_id=str(ana_on_days.pk))
    assert entry.is_change()


def test_deleting_an_assignment_not_yet_started_removes_it(
    world: World, hr: Client, hr_officer: User, at_wednesday_10am
) -> None:
    future = ShiftAssignment.objects.create(
        employee=world.ana, shift=world.night_shift, valid_from=date(2026, 4, 1)
    )

    response = hr.post(url(ShiftAssignment, "delete", future.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not ShiftAssignment.objects.filter(pk=future.pk).exists()
    assert [(a, s) for a, s, _ in audited("shift.unassigned")] == [
        (audit.actor_for_user(hr_officer), str(future.pk))
    ]
    assert LogEntry.objects.get(object_id=str(future.pk)).is_deletion()


def test_deleting_selected_assignments_ends_or_removes_each_through_the_action(
    world: World, hr: Client, hr_officer: User, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    future = ShiftAssignment.objects.create(
        employee=world.ana, shift=world.night_shift, valid_from=date(2026, 4, 1)
    )

    response = hr.post(
        url(ShiftAssignment, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(ana_on_days.pk), str(future.pk)],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert list(ShiftAssignment.objects.values_list("pk", "valid_until")) == [
        (ana_on_days.pk, YESTERDAY)
    ]
    actor = audit.actor_for_user(hr_officer)
    assert [(a, s) for a, s, _ in audited("shift.ended")] == [(actor, str(ana_on_days.pk))]
    assert [(a, s) for a, s, _ in audited("shift.unassigned")] == [(actor, str(future.pk))]
    assert any(
        level == "info" and "1 of the selected assignments had started" in text
        for level, text in messages_of(response)
    )


def employee_page(employee: Employee, *rows: dict[str, str]) -> dict[str, str]:
    """The employee change form as posted, with ``rows`` as its shift assignment inline."""
    data = {
        "employee_number": employee.employee_number,
        "first_name": employee.first_name,
        "last_name": employee.last_name,
        "email": employee.email,
        "department": str(employee.department_id or ""),
        "home_site": str(employee.home_site_id or ""),
        "supervisor": "",
        "user": "",
        "badges-TOTAL_FORMS": "0",
        "badges-INITIAL_FORMS": "0",
        "badges-MIN_NUM_FORMS": "0",
        "badges-MAX_NUM_FORMS": "1000",
        "shift_assignments-TOTAL_FORMS": str(len(rows)),
        "shift_assignments-INITIAL_FORMS": str(sum("id" in row for row in rows)),
        "shift_assignments-MIN_NUM_FORMS": "0",
        "shift_assignments-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        data.update({f"shift_assignments-{i}-{k}": v for k, v in row.items()})
        data[f"shift_assignments-{i}-employee"] = str(employee.pk)
    return data


def test_the_employee_page_adds_and_ends_assignments_through_the_actions(
    world: World, hr: Client, hr_officer: User, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    response = hr.post(
        url(Employee, "change", world.ana.pk),
        employee_page(
            world.ana,
            {
                "id": str(ana_on_days.pk),
                "shift": str(world.day_shift.pk),
                "valid_from": iso(ana_on_days.valid_from),
                "valid_until": "",
                "DELETE": "on",
            },
            {"shift": str(world.night_shift.pk), "valid_from": "2026-03-11", "valid_until": ""},
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    ana_on_days.refresh_from_db()
    assert ana_on_days.valid_until == YESTERDAY
    nights = ShiftAssignment.objects.get(employee=world.ana, shift=world.night_shift)
    actor = audit.actor_for_user(hr_officer)
    assert [(a, s) for a, s, _ in audited("shift.ended")] == [(actor, str(ana_on_days.pk))]
    assert [(a, s) for a, s, _ in audited("shift.assigned")] == [(actor, str(nights.pk))]


def test_the_employee_page_refuses_an_overlap_and_changes_nothing(
    world: World, hr: Client, ana_on_days: ShiftAssignment, at_wednesday_10am
) -> None:
    before = (ShiftAssignment.objects.count(), AuditEvent.objects.count())

    response = hr.post(
        url(Employee, "change", world.ana.pk),
        employee_page(
            world.ana,
            {
                "id": str(ana_on_days.pk),
                "shift": str(world.day_shift.pk),
                "valid_from": iso(ana_on_days.valid_from),
                "valid_until": "",
            },
            {"shift": str(world.day_shift.pk), "valid_from": "2026-03-16", "valid_until": ""},
        ),
    )

    assert response.status_code == 200
    assert "already on Day" in str(response.context["errors"])
    assert (ShiftAssignment.objects.count(), AuditEvent.objects.count()) == before


# --- Slots ---


@pytest.fixture
def staff(supervisor: User) -> Client:
    return at_admin(supervisor)


@pytest.fixture
def spare(world: World) -> Asset:
    """A scanner in no slot."""
    return Asset.objects.create(asset_tag="SC-3001", asset_type=world.scanner)


def test_stocking_an_empty_slot_is_audited_under_the_staff_members_name(
    world: World, staff: Client, supervisor: User, spare: Asset
) -> None:
    slot = world.slot(5)

    response = staff.post(url(Slot, "change", slot.pk), slot_form(slot, asset=str(spare.pk)))

    assert response.status_code == 302, form_errors(response)
    assert world.slot(5).asset == spare
    [(actor, subject, data)] = audited("slot.stocked")
    assert (actor, subject) == (audit.actor_for_user(supervisor), str(slot.pk))
    assert data == {"bank": "BANK-A", "slot": 5, "asset": "SC-3001"}


def test_a_slot_added_with_a_device_is_stocked_through_the_action(
    world: World, admin_client: Client, admin_user: User, spare: Asset
) -> None:
    response = admin_client.post(
        url(Slot, "add"),
        {
            "bank": str(world.bank.pk),
            "number": "7",
            "board": "0",
            "lock_index": "6",
            "size": "small",
            "has_charger": "on",
            "asset": str(spare.pk),
        },
    )

    assert response.status_code == 302, form_errors(response)
    slot = world.slot(7)
    assert slot.asset == spare
    [(actor, subject, _)] = audited("slot.stocked")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(slot.pk))


def test_emptying_a_slot_is_audited(world: World, staff: Client, supervisor: User) -> None:
    slot = world.slot(1)

    response = staff.post(url(Slot, "change", slot.pk), slot_form(slot, asset=""))

    assert response.status_code == 302, form_errors(response)
    assert world.slot(1).asset is None
    [(actor, subject, data)] = audited("slot.emptied")
    assert (actor, subject) == (audit.actor_for_user(supervisor), str(slot.pk))
    assert data["asset"] == "SC-1001"


def _checked_out(asset: Asset, world: World) -> None:
    Asset.objects.filter(pk=asset.pk).update(status=Asset.Status.CHECKED_OUT)


def _being_taken(asset: Asset, world: World) -> None:
    Checkout.objects.create(
        asset=asset, employee=world.ana, slot_out=world.slot(6), reserved_at=timezone.now()
    )


def _retired(asset: Asset, world: World) -> None:
    Asset.objects.filter(pk=asset.pk).update(status=Asset.Status.RETIRED)


@pytest.mark.parametrize(
    ("make_it", "says"),
    [
        (_checked_out, "checked out or being taken"),
        (_being_taken, "checked out or being taken"),
        (_retired, "is retired"),
    ],
    ids=["checked-out", "reserved", "retired"],
)
def test_a_device_out_of_circulation_is_not_stocked(
    world: World, staff: Client, spare: Asset, make_it: Any, says: str
) -> None:
    make_it(spare, world)
    slot = world.slot(5)
    before = AuditEvent.objects.count()

    response = staff.post(url(Slot, "change", slot.pk), slot_form(slot, asset=str(spare.pk)))

    assert says in " ".join(form_errors(response)["asset"])
    assert world.slot(5).asset is None
    assert AuditEvent.objects.count() == before


def test_a_slot_holding_another_device_is_not_stocked(
    world: World, staff: Client, spare: Asset
) -> None:
    slot = world.slot(1)
    before = AuditEvent.objects.count()

    response = staff.post(url(Slot, "change", slot.pk), slot_form(slot, asset=str(spare.pk)))

    assert "holds SC-1001" in " ".join(form_errors(response)["asset"])
    assert world.slot(1).asset.asset_tag == "SC-1001"
    assert AuditEvent.objects.count() == before


def test_a_device_in_another_slot_is_not_stocked(world: World, staff: Client) -> None:
    slot = world.slot(5)
    elsewhere = world.slot(1).asset

    response = staff.post(url(Slot, "change", slot.pk), slot_form(slot, asset=str(elsewhere.pk)))

    assert "BANK-A door 1" in " ".join(form_errors(response)["asset"])
    assert world.slot(5).asset is None
    assert world.slot(1).asset == elsewhere


def test_a_slot_held_for_a_take_or_return_is_neither_stocked_nor_emptied(
    world: World, staff: Client, spare: Asset
) -> None:
    now = timezone.now()
    for number in (1, 5):
        Reservation.objects.create(
            slot=world.slot(number),
            purpose=Reservation.Purpose.REMOTE,
            created_at=now,
            expires_at=now + timedelta(seconds=30),
        )
    before = AuditEvent.objects.count()

    stocking = staff.post(
        url(Slot, "change", world.slot(5).pk), slot_form(world.slot(5), asset=str(spare.pk))
    )
    emptying = staff.post(url(Slot, "change", world.slot(1).pk), slot_form(world.slot(1), asset=""))

    for response in (stocking, emptying):
        assert "take or return right now" in " ".join(form_errors(response)["__all__"])
    assert (world.slot(5).asset, world.slot(1).asset.asset_tag) == (None, "SC-1001")
    assert AuditEvent.objects.count() == before


def test_a_stocking_refused_at_save_time_is_an_error_message(
    world: World, staff: Client, spare: Asset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if someone stocked the slot between the form's check and the save.
    monkeypatch.setattr(devices.admin.SlotForm, "clean", lambda form: form.cleaned_data)
    slot = world.slot(1)
    change = url(Slot, "change", slot.pk)
    before = (AuditEvent.objects.count(), LogEntry.objects.count())

    response = staff.post(change, slot_form(slot, asset=str(spare.pk), size="large"))

    assert (response.status_code, response["Location"]) == (302, change)
    [(level, text)] = messages_of(response)
    assert (level, "holds SC-1001" in text) == ("error", True)
    slot.refresh_from_db()
    assert (slot.asset.asset_tag, slot.size) == ("SC-1001", Slot.Size.SMALL)
    assert (AuditEvent.objects.count(), LogEntry.objects.count()) == before


def test_posting_sensor_and_service_fields_changes_nothing(world: World, staff: Client) -> None:
    slot = world.slot(1)
    reported = {
        name: getattr(slot, name) for name in (*devices.admin.SLOT_SENSOR_FIELDS, "out_of_service")
    }
    page = staff.get(url(Slot, "change", slot.pk)).content.decode()
    for name in reported:
        assert f'name="{name}' not in page
    before = AuditEvent.objects.count()

    response = staff.post(
        url(Slot, "change", slot.pk),
        slot_form(
            slot,
            size="large",
            door_state="open",
            lock_state="unlocked",
            present="false",
            charge_state="fault",
            out_of_service="on",
            out_of_service_reason="typed in",
        ),
    )

    assert response.status_code == 302, form_errors(response)
    slot.refresh_from_db()
    assert slot.size == Slot.Size.LARGE  # the door's layout is the admin's to set
    assert {name: getattr(slot, name) for name in reported} == reported
    assert slot.out_of_service_reason == ""
    # Only the layout change is recorded, and only what it changed.
    [(_, _, data)] = audited("slot.layout_changed")
    assert data == {"bank": "BANK-A", "slot": 1, "size": ["small", "large"]}
    assert AuditEvent.objects.count() == before + 1


def test_stocking_a_slot_with_its_own_device_changes_nothing(world: World) -> None:
    slot = world.slot(1)
    before = AuditEvent.objects.count()
    device_actions.stock_slot(slot, slot.asset, actor=audit.SYSTEM)
    assert AuditEvent.objects.count() == before


# --- Assets ---


def test_assets_are_retired_never_deleted(world: World, admin_client: Client) -> None:
    asset = world.slot(1).asset

    assert admin_client.get(url(Asset, "delete", asset.pk)).status_code == 403
    assert admin_client.post(url(Asset, "delete", asset.pk), {"post": "yes"}).status_code == 403
    changelist = admin_client.get(url(Asset, "changelist")).content.decode()
    assert "delete_selected" not in changelist
    admin_client.post(
        url(Asset, "changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(asset.pk)], "post": "yes"},
    )
    assert Asset.objects.filter(pk=asset.pk).exists()
