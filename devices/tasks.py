"""Periodic work on banks."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from devices.actions import flag_doors_held_open, mark_stale_banks_offline


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def mark_offline_banks() -> list[str]:
    """Banks whose heartbeats stopped are marked offline (claimed by a conditional update)."""
    after = timedelta(seconds=settings.LOCKERHUB["HEARTBEAT_SECONDS"] * 3)
    return mark_stale_banks_offline(timezone.now(), after=after)


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def flag_held_open_doors() -> int:
    """Doors open past their bank's limit raise an alert, once per opening (dedup key)."""
    return flag_doors_held_open(timezone.now())
