"""Alert work for Celery: the rule sweeps (run by beat) and the deliveries they plan.

Tasks take primary keys, acknowledge late (a worker killed mid-task leaves the message to be
redelivered) and are safe to run twice: sweeps deduplicate and claim their rows, a delivery is
claimed by a conditional update before anything is sent.
"""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from lockerhub import actions
from lockerhub.alerts import conf, rules

SWEEP = {
    "acks_late": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(**SWEEP)
def sweep_overdue() -> dict[str, int]:
    """Overdue items: raise, climb the escalation ladder, resolve what came back."""
    return rules.sweep_overdue().as_dict()


@shared_task(**SWEEP)
def scan_access() -> dict[str, int]:
    """The suspicious-access rules over the last few minutes of taps and remote opens."""
    return rules.scan_access().as_dict()


@shared_task(**SWEEP)
def sweep_faults() -> dict[str, int]:
    """Bank offline, charge faults, sensor mismatches; resolves the ones that cleared."""
    return rules.sweep_faults().as_dict()


@shared_task(bind=True, acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True)
def deliver_alert(self, delivery_id: int) -> str:
    """Send one e-mail or webhook; retries with exponential backoff while the endpoint fails."""
    outcome = actions.deliver(delivery_id)
    if outcome.status == "retry":
        raise self.retry(countdown=outcome.retry_in, max_retries=conf("DELIVERY_MAX_ATTEMPTS"))
    return outcome.status


@shared_task(**SWEEP)
def redeliver() -> int:
    """Deliveries whose enqueue was lost, whose retry is due, or whose worker died mid-send."""
    ids = actions.due_deliveries()
    actions.enqueue_deliveries(ids=ids)
    return len(ids)
