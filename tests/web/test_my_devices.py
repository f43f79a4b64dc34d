"""An employee's own page (/me/): the devices they hold, when each is due, their recent taps."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import World, make_employee
from tests.flows import take


def test_an_employee_sees_their_devices_due_times_and_taps(
    client: Client, employee_user: User, world: World, at_wednesday_10am: datetime
) -> None:
    world.ana.user = employee_user
    world.ana.save()
    _, checkout = take(world.bank, world.ana_badge.uid, at_wednesday_10am)
    client.force_login(employee_user)

    response = client.get("/me/")

    assert response.status_code == 200
    assert response.context["checkouts"] == [checkout]
    assert checkout.asset.asset_tag in response.text
    assert "Take granted" in response.text
    assert "overdue" not in response.text


def test_an_overdue_device_is_marked_overdue(
    client: Client, employee_user: User, world: World, at_wednesday_10am: datetime, time_machine
) -> None:
    world.ana.user = employee_user
    world.ana.save()
    _, checkout = take(world.bank, world.ana_badge.uid, at_wednesday_10am)
    time_machine.move_to(checkout.due_at + timedelta(minutes=1), tick=False)
    client.force_login(employee_user)
    assert 'class="overdue"' in client.get("/me/").text


def test_an_employee_sees_nobody_elses_devices(
    client: Client, employee_user: User, world: World, at_wednesday_10am: datetime
) -> None:
    bo = make_employee("E2002", "Bo", world.department)
    bo.user = employee_user
    bo.save()
    take(world.bank, world.ana_badge.uid, at_wednesday_10am)  # Ana's, not Bo's
    client.force_login(employee_user)
    response = client.get("/me/")
    assert response.context["checkouts"] == []
    assert "SC-10" not in response.text


def test_a_sign_in_without_an_employee_record_is_told_so(
    client: Client, outsider: User, world: World
) -> None:
    client.force_login(outsider)
    response = client.get("/me/")
    assert response.status_code == 200
    assert "not linked to an employee record" in response.text


def test_the_page_runs_a_fixed_number_of_queries(
    client: Client, employee_user: User, world: World, at_wednesday_10am: datetime,
    django_assert_max_num_queries,
) -> None:  # fmt: skip
    world.ana.user = employee_user
    world.ana.save()
    take(world.bank, world.ana_badge.uid, at_wednesday_10am)
    client.force_login(employee_user)
    client.get("/me/")
    # Session, user, the MFA gate's role check, employee, devices, taps, nav permissions (2).
    with django_assert_max_num_queries(8):
        assert client.get("/me/").status_code == 200
