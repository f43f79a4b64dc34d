"""Badges: issue, lost → replace, temporary with expiry, PIN for high-value types."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from access.actions import (
    issue_badge,
    present_badge,
    replace_badge,
    revoke_badge,
    set_badge_pin,
)
from access.models import AccessRule, Badge, Reason
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


def test_replacing_a_lost_badge_revokes_it_and_issues_the_new_one(world: World) -> None:
    new = replace_badge(world.ana_badge, "04DDEEFF", actor=SYSTEM, now=NOW)
    old = Badge.objects.get(pk=world.ana_badge.pk)
    assert (old.status, old.revoked_at) == (Badge.Status.LOST, NOW)
    assert (new.status, new.employee_id, new.uid) == (Badge.Status.ACTIVE, world.ana.pk, "04DDEEFF")
    assert AuditEvent.objects.filter(action="badge.replaced").count() == 1


def test_a_failed_replacement_leaves_the_old_badge_working(world: World) -> None:
    with pytest.raises(ValidationError):
        replace_badge(world.ana_badge, "not hex!", actor=SYSTEM, now=NOW)
    assert Badge.objects.get(pk=world.ana_badge.pk).status == Badge.Status.ACTIVE


def test_only_an_active_badge_is_replaced(world: World) -> None:
    revoke_badge(world.ana_badge, actor=SYSTEM, now=NOW)
    with pytest.raises(ValidationError):
        replace_badge(world.ana_badge, "04DDEEFF", actor=SYSTEM, now=NOW)


def test_a_temporary_badge_works_until_its_expiry(world: World) -> None:
    temp = issue_badge(
        world.ana,
        "0ABCDEF0",
        actor=SYSTEM,
        temporary=True,
        valid_from=NOW - timedelta(hours=1),
        valid_until=NOW + timedelta(hours=2),
    )
    assert present_badge(world.other_bank, temp.uid, now=NOW).reason == Reason.GRANTED_TAKE
    later = NOW + timedelta(hours=2, seconds=1)
    assert present_badge(world.other_bank, temp.uid, now=later).reason == Reason.BADGE_EXPIRED


def test_a_temporary_badge_needs_an_expiry(world: World) -> None:
    with pytest.raises(ValidationError, match="expiry"):
        issue_badge(world.ana, "0ABCDEF0", actor=SYSTEM, temporary=True)


def test_a_high_value_type_asks_for_the_pin_set_on_the_badge(world: World) -> None:
    tablets = AccessRule.objects.create(name="Tablets", require_shift=False)
    tablets.departments.add(world.department)
    tablets.asset_types.add(world.tablet)
    world.rule.delete()  # only tablets: the scanner rule would serve a scanner instead
    set_badge_pin(world.ana_badge, "2468", actor=SYSTEM, now=NOW)
    uid = world.ana_badge.uid
    assert present_badge(world.bank, uid, now=NOW).reason == Reason.PIN_REQUIRED
    assert present_badge(world.bank, uid, now=NOW, pin="1111").reason == Reason.PIN_INCORRECT
    granted = present_badge(world.bank, uid, now=NOW, pin="2468")
    assert granted.granted
    assert granted.reservation.checkout.asset.asset_tag == "TB-2001"
    assert "2468" not in str(list(AuditEvent.objects.values_list("data", flat=True)))


def test_a_pin_is_four_to_eight_digits(world: World) -> None:
    with pytest.raises(ValidationError):
        set_badge_pin(world.ana_badge, "12a4", actor=SYSTEM)
    assert not Badge.objects.get(pk=world.ana_badge.pk).pin_hash


def test_a_replacement_keeps_the_pin(world: World) -> None:
    set_badge_pin(world.ana_badge, "2468", actor=SYSTEM, now=NOW)
    new = replace_badge(world.ana_badge, "04DDEEFF", actor=SYSTEM, now=NOW)
    assert new.check_pin("2468")
