"""Delivery: signed webhooks to a real receiver, e-mail, retries with backoff, the delivery log,
and nothing leaves before the transaction commits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail

from assets.models import Checkout
from lockerhub import actions
from lockerhub.alerts import notify
from lockerhub.alerts.rules import sweep_overdue
from lockerhub.models import Alert, AlertDelivery
from tests.alerts.conftest import WebhookReceiver
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


@pytest.fixture(autouse=True)
def frozen(time_machine) -> None:
    time_machine.move_to(NOW, tick=False)


def door_forced(world: World, number: int = 5) -> Alert:
    alert, created = actions.raise_alert(
        Alert.Kind.DOOR_FORCED,
        f"door-forced:{world.bank.code}:{number}:x",
        f"Door {number} at {world.bank.code} opened without an unlock",
        severity=Alert.Severity.CRITICAL,
        now=NOW,
        bank=world.bank,
        site_id=world.site.pk,
    )
    assert created
    return alert


def test_a_raised_alert_is_posted_to_the_webhook_signed(
    world: World,
    webhook_receiver: WebhookReceiver,
    eager_celery,
    django_capture_on_commit_callbacks,
) -> None:
    webhook_receiver.endpoint()
    with django_capture_on_commit_callbacks(execute=True):
        alert = door_forced(world)

    [request] = webhook_receiver.received
    assert request.valid
    assert request.headers[notify.EVENT_HEADER] == "alert.raised"
    assert request.headers[notify.TIMESTAMP_HEADER] == str(int(NOW.timestamp()))
    body = request.json
    assert body["event"] == "alert.raised"
    assert body["alert"]["id"] == alert.pk
    assert body["alert"]["bank"] == world.bank.code
    assert body["alert"]["rule"] == "door-forced"
    delivery = AlertDelivery.objects.get(channel=AlertDelivery.Channel.WEBHOOK)
    assert request.headers[notify.DELIVERY_HEADER] == str(delivery.uuid)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)


def test_a_receiver_with_another_secret_refuses_and_the_log_says_so(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.endpoint()
    webhook_receiver.secret = "whsec_not-the-one"
    door_forced(world)
    delivery = AlertDelivery.objects.get()

    assert actions.deliver(delivery.pk).status == "retry"

    delivery.refresh_from_db()
    assert webhook_receiver.received[0].valid is False
    assert (delivery.status, delivery.response_status) == ("pending", 401)
    assert "401" in delivery.last_error


def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(
    world: World, webhook_receiver: WebhookReceiver, time_machine
) -> None:
    webhook_receiver.endpoint()
    webhook_receiver.statuses = [500, 503]
    door_forced(world)
    delivery = AlertDelivery.objects.get()

    assert actions.deliver(delivery.pk) == actions.DeliveryOutcome("retry", retry_in=30)
    # Not due yet: a second worker given the same id sends nothing.
    assert actions.deliver(delivery.pk).status == "skipped"
    assert actions.due_deliveries() == []

    time_machine.move_to(NOW + timedelta(seconds=30), tick=False)
    assert actions.due_deliveries() == [delivery.pk]
    assert actions.deliver(delivery.pk) == actions.DeliveryOutcome("retry", retry_in=60)
    time_machine.move_to(NOW + timedelta(seconds=90), tick=False)
    assert actions.deliver(delivery.pk).status == "sent"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(webhook_receiver.received) == 3
    # Every attempt carries the same delivery id and body; only the timestamp is new.
    assert len({r.headers[notify.DELIVERY_HEADER] for r in webhook_receiver.received}) == 1
    assert len({r.body for r in webhook_receiver.received}) == 1


def test_a_delivery_gives_up_after_the_last_attempt(
    world: World, webhook_receiver: WebhookReceiver, settings
) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DELIVERY_MAX_ATTEMPTS": 2}
    webhook_receiver.endpoint()
    webhook_receiver.statuses = [500, 500]
    door_forced(world)
    delivery = AlertDelivery.objects.get()
    actions.deliver(delivery.pk)
    assert actions.deliver(delivery.pk, now=NOW + timedelta(minutes=5)).status == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert actions.due_deliveries(NOW + timedelta(days=1)) == []


def test_endpoints_get_only_the_kinds_and_severities_they_asked_for(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.endpoint(kinds=["bank_offline"])
    door_forced(world)
    assert not AlertDelivery.objects.exists()


def test_an_overdue_alert_is_emailed_to_the_employee(
    world: World,
    due_at_10am: Checkout,
    time_machine,
    eager_celery,
    django_capture_on_commit_callbacks,
) -> None:
    time_machine.move_to(NOW + timedelta(minutes=1), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        sweep_overdue()

    [message] = mail.outbox
    assert message.to == ["ana@example.com"]
    assert "overdue" in message.subject
    assert "SC-1001" in message.subject
    delivery = AlertDelivery.objects.get(channel=AlertDelivery.Channel.EMAIL)
    assert message.extra_headers[notify.DELIVERY_HEADER] == str(delivery.uuid)
    assert delivery.status == AlertDelivery.Status.SENT


def test_nothing_is_sent_before_the_transaction_commits(
    world: World,
    webhook_receiver: WebhookReceiver,
    due_at_10am: Checkout,
    time_machine,
    eager_celery,
    django_capture_on_commit_callbacks,
) -> None:
    webhook_receiver.endpoint()
    time_machine.move_to(NOW + timedelta(minutes=1), tick=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sweep_overdue()
    assert callbacks  # deliveries and live events wait for the commit
    assert mail.outbox == []
    assert webhook_receiver.received == []
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"pending"}


def test_acknowledge_and_resolve_reach_the_webhook_too(
    world: World, webhook_receiver: WebhookReceiver, supervisor
) -> None:
    webhook_receiver.endpoint()
    alert = door_forced(world)
    actions.acknowledge_alert(alert, user=supervisor)
    actions.resolve_alert(alert, user=supervisor)
    webhooks = AlertDelivery.objects.filter(channel=AlertDelivery.Channel.WEBHOOK).order_by("pk")
    assert list(webhooks.values_list("event", flat=True)) == [
        "alert.raised",
        "alert.acknowledged",
        "alert.resolved",
    ]
    for delivery in webhooks:
        actions.deliver(delivery.pk)
    states = [json.loads(r.body)["alert"]["state"] for r in webhook_receiver.received]
    assert states == ["open", "acknowledged", "resolved"]
