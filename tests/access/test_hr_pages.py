"""HR's pages: find people, issue and replace badges, shifts for many at once, offboarding."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from access.actions import Intent, assign_shifts, issue_badge, present_badge
from access.models import Badge, Employee, Reason, ShiftAssignment
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import BERLIN, WEDNESDAY_10AM, World, make_employee
from tests.flows import take


@pytest.fixture
def hr(client: Client, hr_officer: User) -> Client:
    client.force_login(hr_officer)
    return client


def names_on(response) -> list[str]:
    return [e.full_name for e in response.context["page"].object_list]


# --- Search ---


def test_people_are_found_by_name_number_department_and_badge_uid(hr: Client, world: World) -> None:
    bo = make_employee("E2002", "Bo", None)
    bo.last_name = "Berg"
    bo.save()
    issue_badge(bo, "0B0B0B0B0B0B0B", actor=SYSTEM)

    assert names_on(hr.get("/people/?q=ana")) == ["Ana Test"]
    assert names_on(hr.get("/people/?q=E2002")) == ["Bo Berg"]
    assert names_on(hr.get("/people/?q=warehouse")) == ["Ana Test"]
    # A UID as a reader prints it, in lower case with separators.
    assert names_on(hr.get("/people/?q=0b:0b:0b:0b")) == ["Bo Berg"]
    assert names_on(hr.get("/people/?q=ana+warehouse")) == ["Ana Test"]
    assert names_on(hr.get("/people/?q=nobody")) == []


def test_search_can_keep_to_one_status(hr: Client, world: World) -> None:
    make_employee("E2002", "Bo", None).__class__.objects.filter(employee_number="E2002").update(
        status=Employee.Status.OFFBOARDED
    )
    assert names_on(hr.get("/people/?status=offboarded")) == ["Bo Test"]
    assert "Ana Test" in names_on(hr.get("/people/?status=active"))


def test_results_come_in_pages_of_25(hr: Client, world: World) -> None:
    for n in range(30):
        make_employee(f"E3{n:03d}", f"Person{n:02d}", world.department)
    first = hr.get("/people/")
    second = hr.get("/people/?page=2")
    assert len(first.context["page"].object_list) == 25
    assert len(second.context["page"].object_list) == 6  # 30 + Ana
    assert 'rel="next"' in first.text


def test_a_page_of_results_costs_the_same_few_queries_however_many_badges(
    hr: Client, world: World, django_assert_max_num_queries
) -> None:
    for n in range(30):
        person = make_employee(f"E3{n:03d}", f"Person{n:02d}", world.department)
        issue_badge(person, f"0C0C0C{n:08X}", actor=SYSTEM)
    hr.get("/people/")  # warm the session
    # Session, user, permissions (2), count, page (with badges and department), shifts.
    with django_assert_max_num_queries(7):
        response = hr.get("/people/?q=person")
    assert response.status_code == 200
    assert len(response.context["page"].object_list) == 25


def test_a_bad_status_filter_is_ignored_with_a_message_not_an_error(
    hr: Client, world: World
) -> None:
    response = hr.get("/people/?status=nonsense")
    assert response.status_code == 200
    assert "Select a valid choice." in response.text


# --- Issuing badges ---


def test_hr_issues_a_badge_with_a_pin(hr: Client, world: World) -> None:
    response = hr.post(
        f"/people/{world.ana.pk}/badges/new/",
        {"uid": "04:aa:bb:cc:dd:ee:ff", "technology": "desfire", "pin": "4711"},
    )
    assert response.status_code == 302
    badge = Badge.objects.get(uid="04AABBCCDDEEFF")
    assert badge.employee == world.ana
    assert badge.status == Badge.Status.ACTIVE
    assert badge.technology == "desfire"
    assert badge.check_pin("4711")
    assert "4711" not in badge.pin_hash
    assert AuditEvent.objects.filter(action="badge.issued", subject_id=str(badge.pk)).exists()


def test_a_temporary_badge_expires_at_the_local_time_hr_typed(hr: Client, world: World) -> None:
    world.ana.home_site = world.site
    world.ana.save()
    response = hr.post(
        f"/people/{world.ana.pk}/badges/new/",
        {
            "uid": "04AABBCCDDEE01",
            "technology": "iso14443a",
            "temporary": "on",
            "valid_until": "2099-03-20T18:00",
        },
    )
    assert response.status_code == 302
    badge = Badge.objects.get(uid="04AABBCCDDEE01")
    assert badge.is_temporary
    assert badge.valid_until == datetime(2099, 3, 20, 18, 0, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"uid": "04AABBCCDDEE02", "temporary": "on"}, "A temporary badge needs an expiry."),
        ({"uid": "XYZ"}, "A badge UID is 4 to 10 bytes of upper-case hex."),
        ({"uid": ""}, "This field is required."),
        ({"uid": "04AABBCCDDEE03", "pin": "12"}, "A PIN is 4 to 8 digits."),
        ({"uid": "04A1B2C3D4E5F6"}, "This UID is already on an active badge of Ana Test (E1001)."),
        (
            {"uid": "04AABBCCDDEE04", "temporary": "on", "valid_until": "tomorrow"},
            "Enter a valid date/time.",
        ),
    ],
)
def test_a_bad_badge_gets_a_plain_message_and_issues_nothing(
    hr: Client, world: World, data: dict, message: str
) -> None:
    before = Badge.objects.count()
    response = hr.post(f"/people/{world.ana.pk}/badges/new/", {"technology": "iso14443a", **data})
    assert response.status_code == 400
    assert message in response.text
    assert Badge.objects.count() == before


def test_an_offboarded_employee_gets_no_new_badge(hr: Client, world: World) -> None:
    Employee.objects.filter(pk=world.ana.pk).update(status=Employee.Status.OFFBOARDED)
    response = hr.post(
        f"/people/{world.ana.pk}/badges/new/", {"uid": "04AABBCCDDEE05", "technology": "other"}
    )
    assert response.status_code == 400
    assert "is offboarded" in response.text
    assert not Badge.objects.filter(uid="04AABBCCDDEE05").exists()


# --- Lost badges ---


def test_a_lost_badge_is_replaced_in_one_step_and_stops_working(hr: Client, world: World) -> None:
    old = world.ana_badge
    response = hr.post(
        f"/people/badges/{old.pk}/replace/", {"status": "lost", "uid": "04 99 88 77 66 55 44"}
    )
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.status == Badge.Status.LOST
    new = Badge.objects.get(uid="04998877665544")
    assert new.status == Badge.Status.ACTIVE
    assert new.employee == world.ana
    denied = present_badge(world.bank, old.uid, now=WEDNESDAY_10AM)
    assert not denied.granted
    assert denied.reason == Reason.BADGE_LOST


def test_a_bad_replacement_uid_leaves_the_old_badge_working(hr: Client, world: World) -> None:
    response = hr.post(
        f"/people/badges/{world.ana_badge.pk}/replace/", {"status": "lost", "uid": "nonsense"}
    )
    assert response.status_code == 400
    assert "A badge UID is 4 to 10 bytes of upper-case hex." in response.text
    world.ana_badge.refresh_from_db()
    assert world.ana_badge.status == Badge.Status.ACTIVE


def test_a_badge_already_lost_cannot_be_replaced_again(hr: Client, world: World) -> None:
    Badge.objects.filter(pk=world.ana_badge.pk).update(status=Badge.Status.LOST)
    response = hr.post(
        f"/people/badges/{world.ana_badge.pk}/replace/", {"status": "lost", "uid": "04998877665543"}
    )
    assert response.status_code == 400
    assert "This badge is lost already; issue a new badge instead." in response.text
    assert not Badge.objects.filter(uid="04998877665543").exists()


# --- Shifts for many people ---


def test_hr_puts_several_people_on_a_shift_at_once(hr: Client, world: World) -> None:
    bo = make_employee("E2002", "Bo", world.department)
    cy = make_employee("E2003", "Cy", world.department)
    response = hr.post(
        "/people/shifts/assign/",
        {
            "employees": [world.ana.pk, bo.pk, cy.pk],
            "shift": world.night_shift.pk,
            "valid_from": "2026-04-01",
            "valid_until": "2026-04-30",
        },
    )
    assert response.status_code == 302
    made = ShiftAssignment.objects.filter(shift=world.night_shift)
    assert sorted(a.employee.first_name for a in made) == ["Ana", "Bo", "Cy"]
    assert {(a.valid_from, a.valid_until) for a in made} == {(date(2026, 4, 1), date(2026, 4, 30))}


def test_one_person_who_cannot_take_the_shift_stops_the_whole_batch(
    hr: Client, world: World
) -> None:
    bo = make_employee("E2002", "Bo", world.department)
    ShiftAssignment.objects.create(
        employee=bo, shift=world.night_shift, valid_from=date(2026, 1, 1)
    )
    response = hr.post(
        "/people/shifts/assign/",
        {
            "employees": [world.ana.pk, bo.pk],
            "shift": world.night_shift.pk,
            "valid_from": "2026-04-01",
        },
    )
    assert response.status_code == 400
    assert "Nobody was assigned." in response.text
    assert "Bo Test (E2002) is already on Night for some of these days." in response.text
    assert not ShiftAssignment.objects.filter(employee=world.ana, shift=world.night_shift).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"shift": "{night}", "valid_from": "2026-04-01"}, "Choose at least one person."),
        ({"employees": ["{ana}"], "valid_from": "2026-04-01"}, "This field is required."),
        (
            {"employees": ["{ana}"], "shift": "{night}", "valid_from": "2026-04-10", "valid_until": "2026-04-01"},
            "The last day comes before the first.",
        ),
        ({"employees": ["999999"], "shift": "{night}", "valid_from": "2026-04-01"}, "not active any more"),
        ({"employees": ["{ana}"], "shift": "{night}", "valid_from": "1 April"}, "Enter a valid date."),
    ],
)  # fmt: skip
def test_a_bad_shift_request_gets_a_plain_message_and_assigns_nobody(
    hr: Client, world: World, data: dict, message: str
) -> None:
    ids = {"{ana}": str(world.ana.pk), "{night}": str(world.night_shift.pk)}
    filled = {
        key: [ids.get(v, v) for v in value] if isinstance(value, list) else ids.get(value, value)
        for key, value in data.items()
    }
    before = ShiftAssignment.objects.count()
    response = hr.post("/people/shifts/assign/", filled)
    assert response.status_code == 400
    assert message in response.text
    assert ShiftAssignment.objects.count() == before


def test_assign_shifts_undoes_every_assignment_when_one_is_refused(world: World) -> None:
    bo = make_employee("E2002", "Bo", world.department)
    Employee.objects.filter(pk=bo.pk).update(status=Employee.Status.OFFBOARDED)
    with pytest.raises(ValidationError) as refused:
        assign_shifts([world.ana, bo], world.night_shift, valid_from=date(2026, 4, 1), actor=SYSTEM)
    assert "Bo Test (E2002) is offboarded." in str(refused.value)
    assert not ShiftAssignment.objects.filter(shift=world.night_shift).exists()
    assert not AuditEvent.objects.filter(action="shift.assigned").exists()


# --- Offboarding ---


def test_offboarding_asks_first_and_shows_what_is_still_out(
    hr: Client, world: World, at_wednesday_10am: datetime
) -> None:
    take(world.bank, world.ana_badge.uid, at_wednesday_10am)
    page = hr.get(f"/people/{world.ana.pk}/offboard/")
    assert page.status_code == 200
    assert "SC-10" in page.text
    world.ana.refresh_from_db()
    assert world.ana.status == Employee.Status.ACTIVE  # looking changes nothing


def test_one_click_offboarding_lists_the_devices_out_and_ends_access_everywhere(
    hr: Client, world: World, at_wednesday_10am: datetime
) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, at_wednesday_10am)

    response = hr.post(f"/people/{world.ana.pk}/offboard/")

    assert response.status_code == 200
    assert response.context["result"].devices_out == [checkout]
    assert checkout.asset.asset_tag in response.text
    assert "still to recover" in response.text
    world.ana.refresh_from_db()
    assert world.ana.status == Employee.Status.OFFBOARDED
    for bank in (world.bank, world.other_bank):
        tap = present_badge(
            bank,
            world.ana_badge.uid,
            now=at_wednesday_10am + timedelta(minutes=5),
            intent=Intent.TAKE,
        )
        assert not tap.granted


def test_offboarding_someone_with_nothing_out_says_so(hr: Client, world: World) -> None:
    response = hr.post(f"/people/{world.ana.pk}/offboard/")
    assert "None: nothing to recover." in response.text
    assert response.context["result"].revoked_badges == [world.ana_badge]


# --- Who may do what ---


@pytest.mark.parametrize(
    "url",
    [
        "/people/{ana}/badges/new/",
        "/people/badges/{badge}/replace/",
        "/people/{ana}/offboard/",
        "/people/shifts/assign/",
    ],
)
def test_a_supervisor_may_look_but_not_change(
    client: Client, supervisor: User, world: World, url: str
) -> None:
    client.force_login(supervisor)
    url = url.format(ana=world.ana.pk, badge=world.ana_badge.pk)
    assert client.get(f"/people/{world.ana.pk}/").status_code == 200
    assert client.post(url, {"uid": "04AABBCCDDEE09", "status": "lost"}).status_code == 403
    world.ana.refresh_from_db()
    assert world.ana.status == Employee.Status.ACTIVE
    assert not Badge.objects.filter(uid="04AABBCCDDEE09").exists()


def test_the_detail_page_offers_a_supervisor_no_buttons_they_cannot_use(
    client: Client, supervisor: User, world: World
) -> None:
    client.force_login(supervisor)
    html = client.get(f"/people/{world.ana.pk}/").text
    assert world.ana_badge.uid in html
    assert "Offboard" not in html
    assert "Issue a badge" not in html


def test_changes_need_the_csrf_token(hr_officer: User, world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(hr_officer)
    assert client.post(f"/people/{world.ana.pk}/offboard/").status_code == 403
    world.ana.refresh_from_db()
    assert world.ana.status == Employee.Status.ACTIVE


def test_every_change_is_audited_as_the_hr_officer(
    hr: Client, hr_officer: User, world: World
) -> None:
    hr.post(f"/people/{world.ana.pk}/offboard/")
    event = AuditEvent.objects.get(action="employee.offboarded")
    assert event.actor == f"user:{hr_officer.pk}"
