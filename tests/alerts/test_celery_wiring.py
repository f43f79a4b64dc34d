"""Celery: configured from settings, tasks found by autodiscovery, the beat schedule stored in
django-celery-beat, late acknowledgement and retries on every alert task."""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from lockerhub.celery import app

ALERT_TASKS = [
    "lockerhub.tasks.sweep_overdue",
    "lockerhub.tasks.scan_access",
    "lockerhub.tasks.sweep_faults",
    "lockerhub.tasks.redeliver",
    "lockerhub.tasks.deliver_alert",
]


def test_celery_reads_its_settings_from_django() -> None:
    assert app.conf.broker_url == settings.REDIS_URL
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_every_task_on_the_schedule_is_found_by_autodiscovery() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert set(ALERT_TASKS) - {"lockerhub.tasks.deliver_alert"} <= scheduled
    assert scheduled <= set(app.tasks)
    for name in ALERT_TASKS:
        task = app.tasks[name]
        assert task.acks_late is True, name
        assert task.autoretry_for, name


def test_the_beat_schedule_is_stored_in_the_database_for_the_admin(live_db) -> None:
    # The scheduler commits and closes connections itself, so it needs real transactions.
    DatabaseScheduler(app=app)
    sweep = PeriodicTask.objects.get(name="alerts-overdue")
    assert sweep.task == "lockerhub.tasks.sweep_overdue"
    assert (sweep.interval.every, sweep.interval.period) == (60, "seconds")
    assert sweep.enabled
    assert PeriodicTask.objects.filter(task="lockerhub.tasks.redeliver").exists()
