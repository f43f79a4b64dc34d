"""Overdue returns: one alert per item, an escalation ladder, and it resolves the moment the item is back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.actions import Intent, present_badge
from access.models import Employee
from assets.models import Checkout
from devices.actions import record_slot_state
from lockerhub import actions, audit
from lockerhub.alerts.rules import sweep_overdue
from lockerhub.models import Alert, AlertDelivery, AuditEvent
from tests.alerts.conftest import out_checkout
from tests.conftest import WEDNESDAY_10AM, World, make_employee
from tests.flows import give_back, take


def emails(alert: Alert, event: str) -> set[str]:
    return set(
        AlertDelivery.objects.filter(
            alert=alert, event=event, channel=AlertDelivery.Channel.EMAIL
        ).values_list("recipient", flat=True)
    )


@pytest.fixture
def boss(world: World) -> Employee:
    boss = Employee.objects.create(
        employee_number="E0001", first_name="Bea", last_name="Boss", email="bea@example.com"
    )
    world.ana.supervisor = boss
    world.ana.save(update_fields=["supervisor"])
    return boss


def test_nothing_is_raised_before_the_due_time(world: World, due_at_10am: Checkout) -> None:
    assert sweep_overdue().raised == 0
    assert not Alert.objects.exists()


def test_the_employee_hears_first_at_the_due_time(
    world: World, due_at_10am: Checkout, supervisor, facility_manager, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(seconds=30), tick=False)

    assert sweep_overdue().raised == 1

    alert = Alert.objects.get()
    assert (alert.kind, alert.rule, alert.checkout, alert.employee) == (
        Alert.Kind.OVERDUE,
        "overdue",
        due_at_10am,
        world.ana,
    )
    assert alert.escalation_level == 0
    assert alert.bank == world.bank
    assert emails(alert, "alert.raised") == {"ana@example.com"}


def test_the_ladder_climbs_to_the_supervisor_then_the_facility_managers(
    world: World, due_at_10am: Checkout, boss: Employee, facility_manager, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    sweep_overdue()
    alert = Alert.objects.get()

    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=29), tick=False)
    assert sweep_overdue().escalated == 0

    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=31), tick=False)
    assert sweep_overdue().escalated == 1
    alert.refresh_from_db()
    assert alert.escalation_level == 1
    assert emails(alert, "alert.escalated") == {"bea@example.com"}

    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=121), tick=False)
    assert sweep_overdue().escalated == 1
    alert.refresh_from_db()
    assert alert.escalation_level == 2
    assert alert.severity == Alert.Severity.CRITICAL
    assert emails(alert, "alert.escalated") == {"bea@example.com", "fred.facilities@example.com"}
    # The top of the ladder is the top: nothing more to send.
    time_machine.move_to(WEDNESDAY_10AM + timedelta(hours=8), tick=False)
    assert sweep_overdue().escalated == 0
    assert Alert.objects.count() == 1


def test_without_a_named_supervisor_the_site_supervisors_hear(
    world: World, due_at_10am: Checkout, supervisor, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=45), tick=False)
    sweep_overdue()
    alert = Alert.objects.get()
    # Raised late (the sweep was down): it starts on the rung it has reached.
    assert alert.escalation_level == 1
    assert emails(alert, "alert.raised") == {"ana@example.com", "sam.supervisor@example.com"}


def test_the_ladder_is_configurable(
    world: World, due_at_10am: Checkout, boss: Employee, settings, time_machine
) -> None:
    settings.LOCKERHUB_ALERTS = {
        **settings.LOCKERHUB_ALERTS,
        "OVERDUE_LADDER": [("employee", 0), ("supervisor", 5), ("facility_manager", 10)],
    }
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    sweep_overdue()
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=6), tick=False)
    sweep_overdue()
    assert Alert.objects.get().escalation_level == 1


def test_an_acknowledged_alert_climbs_no_further(
    world: World, due_at_10am: Checkout, boss: Employee, supervisor, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    sweep_overdue()
    actions.acknowledge_alert(Alert.objects.get(), user=supervisor)

    time_machine.move_to(WEDNESDAY_10AM + timedelta(hours=3), tick=False)
    assert sweep_overdue().escalated == 0
    alert = Alert.objects.get()
    assert alert.escalation_level == 0
    assert alert.resolved_at is None


def test_a_snoozed_alert_climbs_once_the_snooze_is_over(
    world: World, due_at_10am: Checkout, boss: Employee, supervisor, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    sweep_overdue()
    actions.snooze_alert(
        Alert.objects.get(), user=supervisor, until=WEDNESDAY_10AM + timedelta(minutes=60)
    )

    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=40), tick=False)
    assert sweep_overdue().escalated == 0
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=61), tick=False)
    assert sweep_overdue().escalated == 1


def overdue_then_returned(world: World, time_machine, *, put_back: bool = True) -> Alert:
    """Ana's scanner goes overdue, the sweep raises it, and she brings it back (or fails to)."""
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    late = checkout.due_at + timedelta(minutes=5)
    time_machine.move_to(late, tick=False)
    sweep_overdue()
    alert = Alert.objects.get(kind=Alert.Kind.OVERDUE, checkout=checkout)
    back = late + timedelta(minutes=1)
    if put_back:
        give_back(world.bank, world.ana_badge.uid, back)
    else:
        result = present_badge(world.bank, world.ana_badge.uid, now=back, intent=Intent.RETURN)
        door = result.reservation.slot.number
        record_slot_state(world.bank, door, at=back + timedelta(seconds=2), door_open=True)
        record_slot_state(world.bank, door, at=back + timedelta(seconds=5), door_open=False)
    alert.refresh_from_db()
    return alert


def test_the_alert_resolves_the_moment_the_item_comes_back(world: World, time_machine) -> None:
    alert = overdue_then_returned(world, time_machine)

    # Resolved with the door that closed on the returned device, no sweep needed.
    checkout = Checkout.objects.get()
    assert checkout.status == Checkout.Status.RETURNED
    assert alert.resolved_at == checkout.returned_at
    assert alert.resolved_by is None
    resolved = AuditEvent.objects.get(action="alert.resolved", subject_id=str(alert.pk))
    assert (resolved.actor, resolved.data, resolved.at) == (
        audit.SYSTEM,
        {"reason": "returned"},
        checkout.returned_at,
    )
    # Back in: the sweep finds nothing left to resolve and raises nothing new.
    time_machine.move_to(checkout.returned_at + timedelta(minutes=1), tick=False)
    assert sweep_overdue().as_dict() == {"raised": 0, "escalated": 0, "resolved": 0}
    assert Alert.objects.count() == 1


def test_a_return_abandoned_at_the_door_leaves_the_alert_open(world: World, time_machine) -> None:
    alert = overdue_then_returned(world, time_machine, put_back=False)

    assert Checkout.objects.get().status == Checkout.Status.ACTIVE
    assert alert.resolved_at is None
    assert not AuditEvent.objects.filter(action="alert.resolved").exists()


def test_the_alert_and_the_return_commit_together(
    live_db, world: World, time_machine, monkeypatch
) -> None:
    # Committed for real (live_db): the failed return rolls back its whole transaction.
    record = audit.record

    def failing(action: str, **kwargs):
        if action == "return.completed":
            raise RuntimeError("audit chain unavailable")
        return record(action, **kwargs)

    monkeypatch.setattr(audit, "record", failing)
    with pytest.raises(RuntimeError):
        overdue_then_returned(world, time_machine)

    assert Checkout.objects.get().status == Checkout.Status.ACTIVE
    assert Alert.objects.get().resolved_at is None


def test_a_return_resolves_only_its_own_checkouts_alert(world: World, time_machine) -> None:
    # Someone else's scanner is overdue too; Ana's return must not close that one.
    bo = make_employee("E1002", "Bo", world.department, site=world.site)
    other = out_checkout(world, due_at=WEDNESDAY_10AM, employee=bo, slot_number=5)
    overdue_then_returned(world, time_machine)

    assert set(Alert.objects.open().values_list("checkout", flat=True)) == {other.pk}


def test_one_alert_per_item_even_after_a_person_resolves_it(
    world: World, due_at_10am: Checkout, supervisor, time_machine
) -> None:
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    sweep_overdue()
    actions.resolve_alert(Alert.objects.get(), user=supervisor)
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=5), tick=False)
    assert sweep_overdue().raised == 0
    # A second overdue item is a second cause.
    out_checkout(world, due_at=WEDNESDAY_10AM, slot_number=2)
    assert sweep_overdue().raised == 1
    assert Alert.objects.filter(kind=Alert.Kind.OVERDUE).count() == 2


def test_a_disabled_rule_raises_nothing(
    world: World, due_at_10am: Checkout, settings, time_machine
) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DISABLED_RULES": ["overdue"]}
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    assert sweep_overdue().raised == 0
    assert not Alert.objects.exists()
