"""The audit chain: every action appends a linked row; edits are refused or caught."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from access.actions import offboard_employee, present_badge
from lockerhub.audit import SYSTEM
from lockerhub.dbtriggers import drop_audit_triggers
from lockerhub.models import GENESIS_HASH, AuditEvent
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import give_back, take


def _disable_triggers() -> None:
    # Someone with DDL rights can always do this; the chain is what catches them. The test's
    # transaction rolls the DDL back with everything else.
    drop_audit_triggers(connection)


def test_each_action_appends_a_linked_row(world: World) -> None:
    before = AuditEvent.objects.count()
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    give_back(world.bank, world.ana_badge.uid, WEDNESDAY_10AM.replace(hour=12))

    events = list(AuditEvent.objects.filter(seq__gt=before))
    actions = [e.action for e in events]
    taps = [e.data for e in events if e.action == "badge.presented"]
    assert [(t["purpose"], t["granted"]) for t in taps] == [("take", True), ("return", True)]
    assert "take.completed" in actions
    assert "return.completed" in actions
    assert actions.count("badge.presented") == 2
    previous = AuditEvent.objects.get(seq=before).hash if before else GENESIS_HASH
    for event in events:
        assert event.prev_hash == previous
        assert event.hash == hashlib.sha256((previous + event.canonical()).encode()).hexdigest()
        previous = event.hash


def test_verify_audit_passes_on_an_intact_chain(world: World) -> None:
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "audit chain intact" in out.getvalue()


def test_orm_refuses_to_edit_or_delete_audit_rows(world: World) -> None:
    event = AuditEvent.objects.first()
    event.action = "forged"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE lockerhub_auditevent SET action = 'forged'", "DELETE FROM lockerhub_auditevent"],
)
def test_database_refuses_raw_sql_edits(world: World, statement: str) -> None:
    assert AuditEvent.objects.exists()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert not AuditEvent.objects.filter(action="forged").exists()


def test_edit_behind_the_orms_back_is_caught(world: World) -> None:
    present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)
    offboard_employee(world.ana, actor=SYSTEM, now=WEDNESDAY_10AM)
    victim = AuditEvent.objects.get(action="employee.offboarded")
    _disable_triggers()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE lockerhub_auditevent SET actor = %s WHERE id = %s", ["user:999", victim.pk]
        )

    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit", stderr=err)

    assert excinfo.value.returncode == 1
    assert f"audit chain broken at #{victim.seq}" in err.getvalue()
    assert "edited after writing" in err.getvalue()


def test_a_removed_row_is_caught(world: World) -> None:
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    victim = AuditEvent.objects.order_by("seq")[2]
    _disable_triggers()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM lockerhub_auditevent WHERE id = %s", [victim.pk])

    err = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", stderr=err)
    assert f"#{victim.seq + 1}" in err.getvalue()
