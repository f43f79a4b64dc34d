"""Exactly once: a task run twice, two sweeps at once (a second beat), and a worker killed in
the middle of sending each leave one alert and one delivery record per recipient."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection, connections
from django.utils import timezone

from assets.models import Checkout
from lockerhub import tasks
from lockerhub.alerts import notify
from lockerhub.models import Alert, AlertDelivery
from tests.alerts.conftest import WebhookReceiver, out_checkout
from tests.conftest import WEDNESDAY_10AM, World

ROOT = Path(__file__).resolve().parents[2]
on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and a second process need PostgreSQL"
)


def deliveries(channel: str) -> list[AlertDelivery]:
    return list(AlertDelivery.objects.filter(channel=channel))


def test_every_task_run_twice_sends_once(
    world: World,
    due_at_10am: Checkout,
    webhook_receiver: WebhookReceiver,
    time_machine,
    eager_celery,
    django_capture_on_commit_callbacks,
) -> None:
    webhook_receiver.endpoint()
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=1), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep_overdue.apply()
        tasks.sweep_overdue.apply()
        tasks.redeliver.apply()
    [webhook] = deliveries("webhook")
    [email] = deliveries("email")
    # The same delivery handed to the task again (a redelivered message) sends nothing.
    assert tasks.deliver_alert.apply(args=[webhook.pk]).get() == "skipped"
    assert tasks.deliver_alert.apply(args=[email.pk]).get() == "skipped"

    assert Alert.objects.count() == 1
    assert len(webhook_receiver.received) == 1
    assert len(mail.outbox) == 1


@on_postgres
@pytest.mark.postgres
def test_two_beats_sweeping_at_once_raise_one_alert(live_db, world: World) -> None:
    now = timezone.now()
    world.ana.email = "ana@example.com"
    world.ana.save()
    for number in (1, 2, 3):
        out_checkout(world, due_at=now - timedelta(minutes=number), slot_number=number)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=30)
            tasks.sweep_overdue.apply(throw=True)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert Alert.objects.count() == 3
    assert AlertDelivery.objects.count() == 3  # one e-mail to Ana per item


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@on_postgres
@pytest.mark.postgres
@pytest.mark.slow
def test_a_worker_killed_mid_send_leaves_one_alert_and_one_delivery_record(
    live_db,
    world: World,
    webhook_receiver: WebhookReceiver,
    time_machine,
    eager_celery,
    tmp_path: Path,
) -> None:
    now = timezone.now()
    world.ana.email = "ana@example.com"
    world.ana.save()
    out_checkout(world, due_at=now - timedelta(minutes=2))
    webhook_receiver.endpoint()
    webhook_receiver.hold = threading.Event()  # the receiver hangs: the worker is mid-send

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(  # the sweep as a worker runs it, its deliveries in-process
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from lockerhub import tasks; tasks.sweep_overdue.delay()",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "1",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert webhook_receiver.arrived.wait(timeout=60), (tmp_path / "worker.log").read_text()
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    webhook_receiver.hold.set()
    webhook_receiver.hold = None

    [webhook] = deliveries("webhook")
    assert (webhook.status, webhook.attempts) == ("sending", 1)
    assert Alert.objects.count() == 1

    # The message comes back (late acknowledgement) and beat keeps sweeping, twice over.
    lease = timedelta(seconds=settings.LOCKERHUB_ALERTS["DELIVERY_LEASE_SECONDS"])
    time_machine.move_to(now + lease + timedelta(seconds=5), tick=False)
    for _ in range(2):
        tasks.sweep_overdue.apply(throw=True)
        tasks.redeliver.apply(throw=True)

    assert Alert.objects.count() == 1
    [webhook] = deliveries("webhook")
    [email] = deliveries("email")
    assert (webhook.status, webhook.attempts) == ("sent", 2)
    assert (email.status, email.attempts) == ("sent", 1)
    assert len(mail.outbox) == 1
    # The receiver saw the interrupted request and its retry: same delivery id, both signed.
    assert [r.valid for r in webhook_receiver.received] == [True, True]
    assert {r.headers[notify.DELIVERY_HEADER] for r in webhook_receiver.received} == {
        str(webhook.uuid)
    }
