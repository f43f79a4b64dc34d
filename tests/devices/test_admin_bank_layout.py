"""Banks and doors set up in the Django admin go through ``devices.actions``: a bank is made by
``create_bank`` (its token shown once, logged nowhere), changes and layout edits are audited
with old and new values, and a bank or door that holds devices or has history is not deleted.
Every refusal changes nothing."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from access.models import AccessEvent, Reason
from assets.models import Asset, Checkout, Reservation
from devices.actions import update_bank, update_slot_layout
from devices.models import LockerBank, Slot
from lockerhub import audit
from lockerhub.models import AuditEvent
from tests.admin_pages import audited, form_errors, messages_of, rows_and_records, slot_form, url
from tests.conftest import World, make_bank

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic


def snapshot() -> tuple[object, ...]:
    """Everything a refused write must leave as it was."""
    return rows_and_records(LockerBank, Slot)


@pytest.fixture
def spare_bank(world: World) -> LockerBank:
    """A bank with three empty doors that never served anyone."""
    return make_bank(world.site, "BANK-C", 3)


# --- Doors: the slot's own page ---


def test_a_layout_change_is_audited_with_old_and_new_values(
    world: World, admin_client: Client, admin_user: User
) -> None:
    slot = world.slot(5)  # board 0, lock index 4, small, with a charger

    response = admin_client.post(
        url(Slot, "change", slot.pk),
        slot_form(slot, number="9", board="1", lock_index="0", size="large", has_charger=None),
    )

    assert response.status_code == 302, form_errors(response)
    slot.refresh_from_db()
    assert (slot.number, slot.board, slot.lock_index, slot.size, slot.has_charger) == (
        9,
        1,
        0,
        Slot.Size.LARGE,
        False,
    )
    [(actor, subject, data)] = audited("slot.layout_changed")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(slot.pk))
    assert data == {
        "bank": "BANK-A",
        "slot": 5,
        "number": [5, 9],
        "board": [0, 1],
        "lock_index": [4, 0],
        "size": ["small", "large"],
        "has_charger": [True, False],
    }


def test_saving_an_unchanged_door_audits_nothing(world: World, admin_client: Client) -> None:
    slot = world.slot(5)
    before = AuditEvent.objects.count()

    response = admin_client.post(url(Slot, "change", slot.pk), slot_form(slot))

    assert response.status_code == 302, form_errors(response)
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"number": "1"}, "BANK-A has a door 1 already"),
        ({"board": "0", "lock_index": "0"}, "Board 0, lock index 0 is another door's at BANK-A"),
    ],
    ids=["number", "address"],
)
def test_a_number_or_address_another_door_has_is_a_form_error_and_changes_nothing(
    world: World, admin_client: Client, change: dict[str, str], says: str
) -> None:
    slot = world.slot(5)
    before = snapshot()

    response = admin_client.post(url(Slot, "change", slot.pk), slot_form(slot, **change))

    assert says in " ".join(m for errors in form_errors(response).values() for m in errors)
    assert snapshot() == before


def test_the_action_refuses_a_taken_address_in_words(world: World) -> None:
    with pytest.raises(ValidationError, match="Board 0, lock index 0 is another door's"):
        update_slot_layout(world.slot(5), actor=audit.SYSTEM, lock_index=0)
    assert world.slot(5).lock_index == 4


def test_a_door_held_for_a_take_or_return_keeps_its_address_but_may_change_size(
    world: World, admin_client: Client
) -> None:
    slot = world.slot(5)
    now = timezone.now()
    Reservation.objects.create(
        slot=slot,
        purpose=Reservation.Purpose.REMOTE,
        created_at=now,
        expires_at=now + timedelta(seconds=30),
    )
    before = snapshot()

    moved = admin_client.post(url(Slot, "change", slot.pk), slot_form(slot, lock_index="9"))

    assert "take or return right now" in " ".join(form_errors(moved)["__all__"])
    assert snapshot() == before

    resized = admin_client.post(url(Slot, "change", slot.pk), slot_form(slot, size="medium"))
    assert resized.status_code == 302, form_errors(resized)
    assert world.slot(5).size == Slot.Size.MEDIUM
    [(_, _, data)] = audited("slot.layout_changed")
    assert data == {"bank": "BANK-A", "slot": 5, "size": ["small", "medium"]}


def test_a_door_added_on_its_own_page_is_audited(
    world: World, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url(Slot, "add"),
        {
            "bank": str(world.bank.pk),
            "number": "7",
            "board": "0",
            "lock_index": "6",
            "size": "large",
        },
    )

    assert response.status_code == 302, form_errors(response)
    slot = world.slot(7)
    assert (slot.has_charger, slot.asset) == (False, None)
    [(actor, subject, data)] = audited("slot.added")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(slot.pk))
    assert data == {
        "bank": "BANK-A",
        "slot": 7,
        "board": 0,
        "lock_index": 6,
        "size": "large",
        "has_charger": False,
    }


# --- Doors: deleting ---


def test_a_door_holding_a_device_is_not_deleted(world: World, admin_client: Client) -> None:
    slot = world.slot(1)
    change = url(Slot, "change", slot.pk)
    before = snapshot()

    # Said before the confirmation page, and refused if posted anyway.
    for response in (
        admin_client.get(url(Slot, "delete", slot.pk)),
        admin_client.post(url(Slot, "delete", slot.pk), {"post": "yes"}),
    ):
        assert (response.status_code, response["Location"]) == (302, change)
        level, text = messages_of(response)[-1]
        assert level == "error"
        assert "BANK-A door 1 holds SC-1001" in text

    assert snapshot() == before


def test_deleting_an_empty_door_is_audited(
    world: World, admin_client: Client, admin_user: User
) -> None:
    slot = world.slot(5)

    response = admin_client.post(url(Slot, "delete", slot.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Slot.objects.filter(pk=slot.pk).exists()
    [(actor, subject, data)] = audited("slot.deleted")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(slot.pk))
    assert data == {
        "bank": "BANK-A",
        "slot": 5,
        "board": 0,
        "lock_index": 4,
        "size": "small",
        "has_charger": True,
    }
    assert LogEntry.objects.get(object_id=str(slot.pk)).is_deletion()


def test_an_empty_door_with_take_history_is_not_deleted(world: World, admin_client: Client) -> None:
    slot = world.slot(6)
    Checkout.objects.create(
        asset=Asset.objects.get(asset_tag="SC-1001"),
        employee=world.ana,
        status=Checkout.Status.RETURNED,
        slot_out=slot,
        returned_at=timezone.now(),
    )
    before = snapshot()

    response = admin_client.post(url(Slot, "delete", slot.pk), {"post": "yes"})

    [(level, text)] = messages_of(response)
    assert (level, "history" in text) == ("error", True)
    assert snapshot() == before


def test_deleting_selected_doors_is_all_or_nothing(world: World, admin_client: Client) -> None:
    empty, holding = world.slot(5), world.slot(1)
    before = snapshot()

    response = admin_client.post(
        url(Slot, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(empty.pk), str(holding.pk)],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert any(
        level == "error" and "holds SC-1001" in text for level, text in messages_of(response)
    )
    assert snapshot() == before


def test_deleting_selected_empty_doors_audits_each(
    world: World, admin_client: Client, admin_user: User
) -> None:
    doors = [world.slot(5), world.slot(6)]

    response = admin_client.post(
        url(Slot, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(s.pk) for s in doors],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not Slot.objects.filter(pk__in=[s.pk for s in doors]).exists()
    assert [(a, s) for a, s, _ in audited("slot.deleted")] == [
        (audit.actor_for_user(admin_user), str(s.pk)) for s in doors
    ]


# --- Doors: the bank's page ---


def bank_form(bank: LockerBank, *rows: dict[str, str], **change: object) -> dict[str, object]:
    """The bank's change form as posted, with every door as it is and ``rows`` after them."""
    doors = list(bank.slots.order_by("number"))
    data: dict[str, object] = {
        "site": str(bank.site_id),
        "code": bank.code,
        "name": bank.name,
        "location": bank.location,
        "protocol": bank.protocol,
        "door_held_open_seconds": str(bank.door_held_open_seconds),
        "slots-TOTAL_FORMS": str(len(doors) + len(rows)),
        "slots-INITIAL_FORMS": str(len(doors)),
        "slots-MIN_NUM_FORMS": "0",
        "slots-MAX_NUM_FORMS": "1000",
    }
    if bank.invert_hook:
        data["invert_hook"] = "on"
    for i, door in enumerate(doors):
        row = {
            "id": str(door.pk),
            "bank": str(bank.pk),
            "number": str(door.number),
            "board": str(door.board),
            "lock_index": str(door.lock_index),
            "size": door.size,
        }
        if door.has_charger:
            row["has_charger"] = "on"
        data.update({f"slots-{i}-{k}": v for k, v in row.items()})
    for i, row in enumerate(rows, start=len(doors)):
        data.update({f"slots-{i}-{k}": v for k, v in {"bank": str(bank.pk), **row}.items()})
    data.update(change)
    return data


def row_of(bank: LockerBank, number: int) -> int:
    return list(bank.slots.order_by("number").values_list("number", flat=True)).index(number)


def test_the_bank_page_lays_out_adds_and_removes_doors_through_the_actions(
    world: World, admin_client: Client, admin_user: User
) -> None:
    bank = world.bank
    removed = world.slot(5)
    form = bank_form(
        bank,
        {"number": "7", "board": "0", "lock_index": "6", "size": "medium", "has_charger": "on"},
        **{
            f"slots-{row_of(bank, 5)}-DELETE": "on",
            f"slots-{row_of(bank, 6)}-size": "large",
        },
    )

    response = admin_client.post(url(LockerBank, "change", bank.pk), form)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert sorted(bank.slots.values_list("number", "size")) == [
        (1, "small"),
        (2, "small"),
        (3, "small"),
        (4, "small"),
        (6, "large"),
        (7, "medium"),
    ]
    actor = audit.actor_for_user(admin_user)
    [(a, _, layout)] = audited("slot.layout_changed")
    assert (a, layout) == (actor, {"bank": "BANK-A", "slot": 6, "size": ["small", "large"]})
    [(a, subject, _)] = audited("slot.added")
    assert (a, subject) == (actor, str(world.slot(7).pk))
    [(a, subject, _)] = audited("slot.deleted")
    assert (a, subject) == (actor, str(removed.pk))
    assert not AuditEvent.objects.filter(action="bank.updated").exists()


def test_the_bank_page_does_not_remove_a_door_holding_a_device(
    world: World, admin_client: Client
) -> None:
    bank = world.bank
    before = snapshot()

    response = admin_client.post(
        url(LockerBank, "change", bank.pk),
        bank_form(bank, **{f"slots-{row_of(bank, 1)}-DELETE": "on", "location": "Gate 3"}),
    )

    assert response.status_code == 200
    assert "BANK-A door 1 holds SC-1001" in str(response.context["errors"])
    assert snapshot() == before


def test_the_bank_page_refuses_a_door_number_twice(world: World, admin_client: Client) -> None:
    bank = world.bank
    before = snapshot()

    response = admin_client.post(
        url(LockerBank, "change", bank.pk),
        bank_form(bank, {"number": "6", "board": "0", "lock_index": "9", "size": "small"}),
    )

    assert response.status_code == 200
    assert response.context["errors"]
    assert snapshot() == before


# --- Banks ---


def test_a_bank_added_in_the_admin_is_made_by_create_bank_and_its_token_shown_once(
    world: World,
    admin_client: Client,
    admin_user: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    response = admin_client.post(
        url(LockerBank, "add"),
        {
            "site": str(world.site.pk),
            "code": "BANK-D",
            "name": "Dock",
            "location": "Gate 3",
            "protocol": "kerong-cu16",
            "door_held_open_seconds": "90",
            "slots": "18",
        },
    )

    assert response.status_code == 302, form_errors(response)
    bank = LockerBank.objects.get(code="BANK-D")
    assert (bank.name, bank.location, bank.door_held_open_seconds) == ("Dock", "Gate 3", 90)
    doors = list(bank.slots.order_by("number").values_list("number", "board", "lock_index"))
    assert doors[0] == (1, 0, 0)
    assert doors[16:] == [(17, 1, 0), (18, 1, 1)]
    assert not bank.slots.filter(has_charger=True).exists()  # "chargers" left unticked
    [(actor, subject, data)] = audited("bank.created")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(bank.pk))
    assert data == {"site": "Test DC", "slots": 18}

    [text] = [text for level, text in messages_of(response) if level == "warning"]
    assert text.startswith("Device token for BANK-D (shown once")
    token = text.rsplit(" ", 1)[-1]
    assert bank.check_token(token)
    # Shown on the page the add leads to, then never again; nor kept anywhere else.
    page = url(LockerBank, "change", bank.pk)
    assert token in admin_client.get(page).content.decode()
    assert token not in admin_client.get(page).content.decode()
    assert not AuditEvent.objects.filter(data__icontains=token).exists()
    assert not LogEntry.objects.filter(change_message__icontains=token).exists()
    assert token not in caplog.text


def test_a_bank_code_taken_is_a_form_error_and_makes_nothing(
    world: World, admin_client: Client
) -> None:
    before = snapshot()

    response = admin_client.post(
        url(LockerBank, "add"),
        {
            "site": str(world.site.pk),
            "code": "BANK-A",
            "protocol": "kerong-cu16",
            "door_held_open_seconds": "60",
            "slots": "4",
            "chargers": "on",
        },
    )

    assert form_errors(response)["code"]
    assert snapshot() == before


def test_changing_a_bank_is_audited_with_old_and_new_values(
    world: World, admin_client: Client, admin_user: User
) -> None:
    bank = world.bank
    token_hash = bank.token_hash

    response = admin_client.post(
        url(LockerBank, "change", bank.pk),
        bank_form(bank, location="Gate 3", door_held_open_seconds="90", invert_hook="on"),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    bank.refresh_from_db()
    assert (bank.location, bank.door_held_open_seconds, bank.invert_hook) == ("Gate 3", 90, True)
    assert bank.token_hash == token_hash
    [(actor, subject, data)] = audited("bank.updated")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(bank.pk))
    assert data == {
        "bank": "BANK-A",
        "location": ["", "Gate 3"],
        "invert_hook": [False, True],
        "door_held_open_seconds": [60, 90],
    }
    assert not AuditEvent.objects.filter(action__startswith="slot.").exists()


def test_renaming_a_bank_to_a_taken_code_is_refused_and_changes_nothing(
    world: World, admin_client: Client
) -> None:
    before = snapshot()

    response = admin_client.post(
        url(LockerBank, "change", world.bank.pk), bank_form(world.bank, code="BANK-B")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["code"]
    assert snapshot() == before
    with pytest.raises(ValidationError, match="A bank 'BANK-B' exists already"):
        update_bank(world.bank, actor=audit.SYSTEM, code="BANK-B")


def test_a_bank_holding_devices_is_not_deleted(world: World, admin_client: Client) -> None:
    bank = world.bank
    before = snapshot()

    for response in (
        admin_client.get(url(LockerBank, "delete", bank.pk)),
        admin_client.post(url(LockerBank, "delete", bank.pk), {"post": "yes"}),
    ):
        assert (response.status_code, response["Location"]) == (
            302,
            url(LockerBank, "change", bank.pk),
        )
        level, text = messages_of(response)[-1]
        assert level == "error"
        assert "BANK-A still holds devices behind door(s) 1, 2, 3, 4" in text

    assert snapshot() == before


def _reservation(bank: LockerBank, world: World) -> None:
    now = timezone.now()
    Reservation.objects.create(
        slot=bank.slots.get(number=1),
        purpose=Reservation.Purpose.REMOTE,
        status=Reservation.Status.LAPSED,
        created_at=now - timedelta(days=3),
        expires_at=now - timedelta(days=3) + timedelta(seconds=30),
    )


def _returned_here(bank: LockerBank, world: World) -> None:
    Checkout.objects.create(
        asset=Asset.objects.get(asset_tag="SC-1001"),
        employee=world.ana,
        status=Checkout.Status.RETURNED,
        slot_out=world.slot(1),
        slot_back=bank.slots.get(number=2),
        returned_at=timezone.now(),
    )


def _tapped_here(bank: LockerBank, world: World) -> None:
    AccessEvent.objects.create(
        bank=bank, uid=world.ana_badge.uid, granted=False, reason=Reason.OUTSIDE_SHIFT
    )


@pytest.mark.parametrize(
    "history", [_reservation, _returned_here, _tapped_here], ids=["reservation", "return", "tap"]
)
def test_a_bank_with_history_is_not_deleted(
    world: World, admin_client: Client, spare_bank: LockerBank, history: Any
) -> None:
    history(spare_bank, world)
    before = snapshot()

    response = admin_client.post(url(LockerBank, "delete", spare_bank.pk), {"post": "yes"})

    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "BANK-C has checkout, reservation or badge-tap history" in text
    assert snapshot() == before


def test_deleting_an_unused_bank_is_audited(
    world: World, admin_client: Client, admin_user: User, spare_bank: LockerBank
) -> None:
    response = admin_client.post(url(LockerBank, "delete", spare_bank.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not LockerBank.objects.filter(code="BANK-C").exists()
    assert not Slot.objects.filter(bank_id=spare_bank.pk).exists()
    [(actor, subject, data)] = audited("bank.deleted")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(spare_bank.pk))
    assert (data["code"], data["site"], data["slots"]) == ("BANK-C", "Test DC", 3)
    assert LogEntry.objects.get(object_id=str(spare_bank.pk)).is_deletion()


def test_deleting_selected_banks_is_all_or_nothing(
    world: World, admin_client: Client, spare_bank: LockerBank
) -> None:
    before = snapshot()

    response = admin_client.post(
        url(LockerBank, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(spare_bank.pk), str(world.bank.pk)],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert any(
        level == "error" and "BANK-A still holds devices" in text
        for level, text in messages_of(response)
    )
    assert snapshot() == before
