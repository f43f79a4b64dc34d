"""Helpers that drive the real flows the way a bank does: tap, door, presence, door."""

from __future__ import annotations

from datetime import datetime, timedelta

from access.actions import Intent, TapResult, present_badge
from assets.models import Checkout
from devices.actions import record_slot_state
from devices.models import LockerBank


def take(bank: LockerBank, uid: str, at: datetime, **kwargs) -> tuple[TapResult, Checkout]:
    """Tap, open the door, lift the device out, close the door."""
    result = present_badge(bank, uid, now=at, **kwargs)
    assert result.granted, result.message
    slot = result.reservation.slot
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=2), door_open=True)
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=3), present=False)
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=5), door_open=False)
    return result, Checkout.objects.get(pk=result.reservation.checkout_id)


def give_back(bank: LockerBank, uid: str, at: datetime, **kwargs) -> tuple[TapResult, Checkout]:
    """Tap, open the door, put the device in, close the door."""
    result = present_badge(bank, uid, now=at, intent=Intent.RETURN, **kwargs)
    assert result.granted, result.message
    slot = result.reservation.slot
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=2), door_open=True)
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=3), present=True)
    record_slot_state(bank, slot.number, at=at + timedelta(seconds=5), door_open=False)
    return result, Checkout.objects.get(pk=result.reservation.checkout_id)
