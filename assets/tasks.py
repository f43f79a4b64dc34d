"""Periodic work on checkouts and reservations."""

from celery import shared_task

from assets.actions import lapse_expired_reservations


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def lapse_reservations() -> int:
    """Reservations whose door never opened lapse. Safe to run twice: each row is claimed under a lock."""
    return lapse_expired_reservations()
