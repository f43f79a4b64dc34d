"""Reading the Django admin's answers in tests: its pages, messages, form errors, and what a
write left in the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db.models import Model
from django.urls import reverse

from devices.models import Slot
from lockerhub.models import AuditEvent


def url(model: type[Model] | Model, view: str, *args: object) -> str:
    """The admin page ``view`` (changelist, add, change, delete…) of ``model``."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def messages_of(response: Any) -> list[tuple[str, str]]:
    """The messages the page showed, as (level, text)."""
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def form_errors(response: Any) -> dict[str, list[str]]:
    """The errors of a form page shown again (status 200, not a redirect)."""
    assert response.status_code == 200
    return response.context["adminform"].form.errors


def audited(action: str) -> list[tuple[str, str, dict]]:
    """Actor, subject id and data of every audit record of ``action``, oldest first."""
    return list(
        AuditEvent.objects.filter(action=action)
        .order_by("seq")
        .values_list("actor", "subject_id", "data")
    )


def rows_and_records(*models: type[Model]) -> tuple[object, ...]:
    """Every row of ``models``, the audit count and the admin history count: what a refused
    write must leave as it was."""
    rows = [list(m._default_manager.order_by("pk").values()) for m in models]
    return (*rows, AuditEvent.objects.count(), LogEntry.objects.count())


def slot_form(slot: Slot, **change: object) -> dict[str, object]:
    """A door's admin page as posted untouched, then ``change`` (a None value leaves a field out)."""
    form: dict[str, object] = {
        "number": str(slot.number),
        "board": str(slot.board),
        "lock_index": str(slot.lock_index),
        "size": slot.size,
        "asset": str(slot.asset_id or ""),
    }
    if slot.has_charger:
        form["has_charger"] = "on"
    form.update(change)
    return {k: v for k, v in form.items() if v is not None}
