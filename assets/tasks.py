"""Periodic work on checkouts and reservations."""

from celery import shared_task

from assets import rollups
from assets.actions import lapse_expired_reservations


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def lapse_reservations() -> int:
    """Reservations whose door never opened lapse. Safe to run twice: each row is claimed under a lock."""
    return lapse_expired_reservations()


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def refresh_report_rollups() -> int:
    """Fold the checkouts and taps of the last minutes into the report rollups.

    Safe to run twice: the rollup watermark row is locked for the whole refresh, and each bank-day
    is rebuilt from the source rows rather than incremented.
    """
    return rollups.refresh_report_rollups()


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=3)
def rebuild_recent_report_rollups() -> None:
    """Rebuild the last week of rollups: catches rows that arrived late with old timestamps."""
    rollups.rebuild_recent_rollups()
