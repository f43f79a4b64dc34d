"""The decision core (access/core.py) on hand-made snapshots: no database, as a bank runs it."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.hashers import make_password

from access import core
from access.core import Intent, Reason

KEY = b"0123456789abcdef"
NOW = datetime(2026, 3, 11, 9, 0, tzinfo=UTC).timestamp()
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
ANA, BOB = "04A1B2C3D4E5F6", "0B0B0B0B"
SCANNER, TABLET = 1, 2
# Ana's shift runs 05:00-13:00 UTC; her rule gives one scanner, 15 minutes' grace either side.
SHIFT = (NOW - 4 * HOUR, NOW + 4 * HOUR)
SCANNER_RULE = core.Rule(frozenset({SCANNER}), True, 15 * MINUTE, 15 * MINUTE, 1)


def make_snapshot(
    *,
    badge: core.BadgeInfo | None = None,
    holder: core.Holder | None = None,
    slots: dict[int, core.SlotInfo] | None = None,
    **changes,
) -> core.Snapshot:
    """BANK-A: scanners in doors 1-3, a tablet (PIN) in door 4, doors 5 and 6 empty."""
    snapshot = core.Snapshot(
        bank="BANK-A",
        version=3,
        issued_at=NOW - HOUR,
        valid_until=NOW + 11 * HOUR,
        uid_key=KEY,
        types={
            SCANNER: core.AssetTypeInfo("Scanner", False, 12 * HOUR),
            TABLET: core.AssetTypeInfo("Tablet", True, 10 * HOUR),
        },
        badges={
            core.hash_uid(KEY, ANA): badge or core.BadgeInfo(7, "active", NOW - 30 * DAY, None),
        },
        holders={7: holder or core.Holder("Ana", "active", rules=(SCANNER_RULE,), shifts=(SHIFT,))},
        slots=slots
        or {
            1: core.SlotInfo(1, asset="SC-1001", asset_type=SCANNER, asset_status="available"),
            2: core.SlotInfo(2, asset="SC-1002", asset_type=SCANNER, asset_status="available"),
            3: core.SlotInfo(3, asset="SC-1003", asset_type=SCANNER, asset_status="available"),
            4: core.SlotInfo(4, asset="TB-2001", asset_type=TABLET, asset_status="available"),
            5: core.SlotInfo(5),
            6: core.SlotInfo(6),
        },
    )
    return replace(snapshot, **changes)


def make_states(snapshot: core.Snapshot, **per_slot: dict) -> list[core.SlotState]:
    """Closed doors, present where a device is, charged since 06:00; ``s3={...}`` changes door 3."""
    states = []
    for number, info in snapshot.slots.items():
        state = core.SlotState(
            number,
            present=info.asset is not None,
            charge_state="charged" if info.asset else "empty",
            charge_since=NOW - 3 * HOUR + number,
        )
        states.append(replace(state, **per_slot.get(f"s{number}", {})))
    return states


PIN_TEXT = "4321"


@functools.cache
def pin_hash() -> str:
    """Django's own hash of the PIN 4321 (PBKDF2-SHA256, as ``Badge.set_pin`` makes it)."""
    return make_password(PIN_TEXT, hasher="pbkdf2_sha256")


def loan(checkout: int = 50, **changes) -> core.Loan:
    base = core.Loan(
        checkout=checkout,
        asset_type=SCANNER,
        status="active",
        due_at=NOW + 4 * HOUR,
        reserved_at=NOW - HOUR,
        bank="BANK-A",
        slot=2,
        asset=f"SC-{checkout}",
    )
    return replace(base, **changes)


def decide(snapshot: core.Snapshot | None, *, at: float = NOW, uid: str = ANA, states=None, **kw):
    if states is None:
        states = make_states(snapshot) if snapshot else []
    return core.decide(snapshot, states, at, uid, **kw)


def ana(**changes) -> core.Holder:
    return replace(core.Holder("Ana", "active", rules=(SCANNER_RULE,), shifts=(SHIFT,)), **changes)


def badge(**changes) -> core.BadgeInfo:
    return replace(core.BadgeInfo(7, "active", NOW - 30 * DAY, None), **changes)


# -- every reason code -----------------------------------------------------------------------

DENIALS = [
    # (reason, snapshot, decide keywords)
    (Reason.BANK_NOT_READY, lambda: None, {}),
    (Reason.BADGE_UNKNOWN, make_snapshot, {"uid": BOB}),
    (Reason.BADGE_UNKNOWN, lambda: make_snapshot(holders={}), {}),
    (Reason.BADGE_REVOKED, lambda: make_snapshot(badge=badge(status="revoked")), {}),
    (
        Reason.EMPLOYEE_OFFBOARDED,
        lambda: make_snapshot(badge=badge(status="revoked"), holder=ana(status="offboarded")),
        {},
    ),
    (Reason.EMPLOYEE_OFFBOARDED, lambda: make_snapshot(holder=ana(status="offboarded")), {}),
    (Reason.BADGE_LOST, lambda: make_snapshot(badge=badge(status="lost")), {}),
    (Reason.BADGE_EXPIRED, lambda: make_snapshot(badge=badge(status="expired")), {}),
    (Reason.BADGE_EXPIRED, lambda: make_snapshot(badge=badge(valid_until=NOW)), {}),
    (Reason.BADGE_NOT_YET_VALID, lambda: make_snapshot(badge=badge(valid_from=NOW + 1)), {}),
    (Reason.EMPLOYEE_SUSPENDED, lambda: make_snapshot(holder=ana(status="suspended")), {}),
    (Reason.NOT_PERMITTED, lambda: make_snapshot(holder=ana(rules=())), {}),
    (Reason.OUTSIDE_SHIFT, lambda: make_snapshot(holder=ana(shifts=())), {}),
    (
        Reason.ITEM_OVERDUE,
        lambda: make_snapshot(
            holder=ana(
                rules=(replace(SCANNER_RULE, max_concurrent=2),),
                loans=(loan(due_at=NOW - 1),),
            )
        ),
        {"intent": Intent.TAKE},
    ),
    (
        Reason.LIMIT_REACHED,
        lambda: make_snapshot(holder=ana(loans=(loan(),))),
        {"intent": Intent.TAKE},
    ),
    (
        Reason.PIN_REQUIRED,
        lambda: make_snapshot(
            holder=ana(rules=(replace(SCANNER_RULE, types=frozenset({TABLET})),))
        ),
        {},
    ),
    (
        Reason.PIN_INCORRECT,
        lambda: make_snapshot(
            badge=badge(pin_hash=pin_hash()),
            holder=ana(rules=(replace(SCANNER_RULE, types=frozenset({TABLET})),)),
        ),
        {"pin": "0000"},
    ),
    (
        Reason.NO_ASSET_AVAILABLE,
        lambda: make_snapshot(
            slots={n: core.SlotInfo(n, out_of_service=n < 4) for n in range(1, 7)}
        ),
        {},
    ),
    (Reason.NO_RETURN_SLOT, make_snapshot, {"intent": Intent.RETURN}),
    (Reason.SNAPSHOT_STALE, lambda: make_snapshot(valid_until=NOW), {}),
]


@pytest.mark.parametrize(("reason", "build", "kwargs"), DENIALS, ids=[str(d[0]) for d in DENIALS])
def test_denial_reason(reason: Reason, build, kwargs) -> None:
    decision = decide(build(), **kwargs)

    assert (decision.granted, decision.reason) == (False, reason)
    assert decision.slot is None
    assert decision.message
    assert "{" not in decision.message


def test_every_reason_code_is_covered_and_has_a_message() -> None:
    covered = {d[0] for d in DENIALS} | core.GRANTED
    assert covered == set(Reason)
    assert set(Reason) - core.GRANTED <= set(core.REASON_MESSAGES)
    assert set(Reason) == set(core.REASON_LABELS)


def test_a_granted_take_names_the_door_the_device_and_the_due_time() -> None:
    decision = decide(make_snapshot())

    assert (decision.granted, decision.reason, decision.purpose) == (
        True,
        Reason.GRANTED_TAKE,
        core.Purpose.TAKE,
    )
    assert (decision.slot, decision.asset, decision.asset_type) == (1, "SC-1001", SCANNER)
    assert (decision.holder, decision.first_name) == (7, "Ana")
    assert decision.shift_end == SHIFT[1]
    assert decision.due_at == SHIFT[1] + 30 * MINUTE
    assert decision.allowed == {SCANNER: SHIFT[1]}
    assert decision.message == "Hi Ana — door 1 is open, take scanner SC-1001"


def test_a_granted_return_when_a_device_is_out() -> None:
    snapshot = make_snapshot(holder=ana(loans=(loan(bank="BANK-B", slot=9),)))

    decision = decide(snapshot)

    assert (decision.granted, decision.reason, decision.purpose) == (
        True,
        Reason.GRANTED_RETURN,
        core.Purpose.RETURN,
    )
    assert (decision.slot, decision.checkout, decision.asset) == (5, 50, "SC-50")
    assert decision.message.startswith("Thanks Ana — door 5 is open, put SC-50 back")


def test_the_loan_due_first_is_returned_first() -> None:
    loans = (loan(50, due_at=NOW + 3 * HOUR), loan(51, due_at=NOW + HOUR))
    assert decide(make_snapshot(holder=ana(loans=loans))).checkout == 51


# -- shifts and grace ------------------------------------------------------------------------


def test_a_shift_across_midnight_holds_on_both_days() -> None:
    # 22:00 to 06:00 UTC the next morning.
    night = (NOW + 13 * HOUR, NOW + 21 * HOUR)
    snapshot = make_snapshot(holder=ana(shifts=(night,)), valid_until=NOW + DAY)

    for at in (night[0] + HOUR, night[0] + 7.5 * HOUR):
        decision = decide(snapshot, at=at)
        assert decision.granted
        assert decision.shift_end == night[1]
        assert decision.due_at == night[1] + snapshot.return_grace
    assert decide(snapshot, at=night[1] + 20 * MINUTE).reason == Reason.OUTSIDE_SHIFT


@pytest.mark.parametrize(
    ("at", "granted"),
    [
        (SHIFT[0] - 15 * MINUTE - 1, False),
        (SHIFT[0] - 15 * MINUTE, True),
        (SHIFT[1] + 15 * MINUTE - 1, True),
        (SHIFT[1] + 15 * MINUTE, False),  # the window is half-open
    ],
)
def test_grace_before_and_after_the_shift(at: float, granted: bool) -> None:
    decision = decide(make_snapshot(), at=at)
    assert decision.granted is granted
    assert decision.reason == (Reason.GRANTED_TAKE if granted else Reason.OUTSIDE_SHIFT)


def test_a_rule_without_shift_needs_no_shift_and_gives_the_types_maximum_loan() -> None:
    snapshot = make_snapshot(
        holder=ana(rules=(replace(SCANNER_RULE, require_shift=False),), shifts=())
    )

    decision = decide(snapshot)

    assert decision.granted
    assert decision.shift_end is None
    assert decision.due_at == NOW + 12 * HOUR


def test_of_two_overlapping_occurrences_the_later_end_sets_the_due_time() -> None:
    snapshot = make_snapshot(holder=ana(shifts=(SHIFT, (NOW - HOUR, NOW + 6 * HOUR))))
    assert decide(snapshot).shift_end == NOW + 6 * HOUR


def test_the_due_time_is_capped_by_the_types_maximum_loan() -> None:
    snapshot = make_snapshot()
    snapshot = replace(
        snapshot, types={**snapshot.types, SCANNER: core.AssetTypeInfo("Scanner", False, HOUR)}
    )
    assert decide(snapshot).due_at == NOW + HOUR


# -- limits and strikes ----------------------------------------------------------------------


def test_limits_are_per_rule_and_its_types() -> None:
    tablet_rule = replace(SCANNER_RULE, types=frozenset({TABLET}))
    holding_a_scanner = make_snapshot(
        badge=badge(pin_hash=pin_hash()),
        holder=ana(rules=(SCANNER_RULE, tablet_rule), loans=(loan(),)),
    )

    # The scanner rule is used up; the tablet rule still gives a tablet.
    decision = decide(holding_a_scanner, intent=Intent.TAKE, pin="4321")
    assert (decision.granted, decision.asset) == (True, "TB-2001")
    assert decision.allowed == {TABLET: SHIFT[1]}

    holding_both = replace(
        holding_a_scanner,
        holders={7: ana(rules=(SCANNER_RULE, tablet_rule), loans=(loan(), loan(51, asset_type=2)))},
    )
    assert decide(holding_both, intent=Intent.TAKE, pin="4321").reason == Reason.LIMIT_REACHED


def test_a_device_being_taken_counts_against_the_limit() -> None:
    being_taken = loan(status="reserved", due_at=None, bank="BANK-B")
    snapshot = make_snapshot(holder=ana(loans=(being_taken,)))
    assert decide(snapshot).reason == Reason.LIMIT_REACHED


def test_an_overdue_device_blocks_a_take_but_not_its_return() -> None:
    rules = (replace(SCANNER_RULE, max_concurrent=3),)
    snapshot = make_snapshot(holder=ana(rules=rules, loans=(loan(due_at=NOW - MINUTE),)))

    assert decide(snapshot, intent=Intent.TAKE).reason == Reason.ITEM_OVERDUE
    returned = decide(snapshot)
    assert (returned.granted, returned.reason, returned.checkout) == (
        True,
        Reason.GRANTED_RETURN,
        50,
    )


# -- PIN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hasher", ["pbkdf2_sha256", "pbkdf2_sha1"])
def test_the_pin_is_checked_against_djangos_hash(hasher: str) -> None:
    encoded = make_password("4321", hasher=hasher)
    assert core.check_pin("4321", encoded)
    assert not core.check_pin("4322", encoded)
    assert not core.check_pin("", encoded)
    assert not core.check_pin(None, encoded)
    assert not core.check_pin("4321", "")
    assert not core.check_pin("4321", "!unusable")


def test_a_pin_protected_type_needs_the_right_pin() -> None:
    snapshot = make_snapshot(
        badge=badge(pin_hash=pin_hash()),
        holder=ana(rules=(replace(SCANNER_RULE, types=frozenset({TABLET})),)),
    )

    assert decide(snapshot).reason == Reason.PIN_REQUIRED
    assert decide(snapshot, pin="1234").reason == Reason.PIN_INCORRECT
    decision = decide(snapshot, pin="4321")
    assert (decision.granted, decision.slot, decision.asset) == (True, 4, "TB-2001")


def test_without_a_pin_a_device_that_needs_none_is_given() -> None:
    snapshot = make_snapshot(
        holder=ana(rules=(replace(SCANNER_RULE, types=frozenset({SCANNER, TABLET})),))
    )
    states = make_states(snapshot, s4={"charge_since": 0.0})  # the tablet is the best charged
    decision = decide(snapshot, states=states)
    assert (decision.granted, decision.asset_type) == (True, SCANNER)


def test_no_pin_is_asked_for_a_type_held_to_its_limit() -> None:
    tablet_rule = replace(SCANNER_RULE, types=frozenset({TABLET}))
    holding_a_tablet = ana(rules=(SCANNER_RULE, tablet_rule), loans=(loan(asset_type=TABLET),))
    no_scanners = {n: core.SlotInfo(n) for n in (1, 2, 3, 5, 6)}
    snapshot = make_snapshot(
        badge=badge(pin_hash=pin_hash()),
        holder=holding_a_tablet,
        slots={**no_scanners, 4: make_snapshot().slots[4]},
    )

    assert decide(snapshot, intent=Intent.TAKE).reason == Reason.NO_ASSET_AVAILABLE
    assert decide(snapshot, intent=Intent.TAKE, pin=PIN_TEXT).reason == Reason.NO_ASSET_AVAILABLE


# -- the snapshot's age ------------------------------------------------------------------------


def test_a_stale_snapshot_refuses_takes_but_accepts_returns() -> None:
    stale = make_snapshot(valid_until=NOW - MINUTE)
    assert decide(stale).reason == Reason.SNAPSHOT_STALE

    out = replace(stale, holders={7: ana(loans=(loan(),))})
    decision = decide(out)
    assert (decision.granted, decision.reason) == (True, Reason.GRANTED_RETURN)


# -- holds: the same door shown again ----------------------------------------------------------


def test_a_second_tap_while_the_take_door_waits_shows_the_same_door() -> None:
    snapshot = make_snapshot(holder=ana(loans=(loan(60, status="reserved", due_at=None),)))
    states = make_states(snapshot, s3={"held": ("take", 60), "held_by": 7})

    decision = decide(snapshot, states=states)

    assert (decision.granted, decision.reason, decision.slot) == (True, Reason.GRANTED_TAKE, 3)
    assert (decision.again, decision.checkout, decision.asset) == (True, 60, "SC-1003")


def test_a_second_tap_while_the_return_door_waits_shows_the_same_door() -> None:
    snapshot = make_snapshot(holder=ana(loans=(loan(),)))
    states = make_states(snapshot, s6={"held": ("return", 50), "held_by": 7})

    decision = decide(snapshot, states=states)

    assert (decision.reason, decision.slot, decision.again) == (Reason.GRANTED_RETURN, 6, True)


def test_someone_elses_hold_is_not_shown_again() -> None:
    snapshot = make_snapshot()
    states = make_states(snapshot, s1={"held": ("take", 0), "held_by": 8})
    decision = decide(snapshot, states=states)
    assert (decision.slot, decision.again) == (2, False)


# -- which slot --------------------------------------------------------------------------------


def test_a_return_prefers_the_slot_it_came_from() -> None:
    snapshot = make_snapshot(
        holder=ana(loans=(loan(slot=6),)),
        slots={**make_snapshot().slots, 2: core.SlotInfo(2)},
    )
    assert decide(snapshot).slot == 6
    # From another bank's door 6: the first free slot here.
    elsewhere = replace(snapshot, holders={7: ana(loans=(loan(slot=6, bank="BANK-B"),))})
    assert decide(elsewhere).slot == 2


def test_a_return_needs_an_empty_charging_slot() -> None:
    slots = {**make_snapshot().slots, 5: core.SlotInfo(5, has_charger=False)}
    snapshot = make_snapshot(holder=ana(loans=(loan(),)), slots=slots)
    assert decide(snapshot).slot == 6
    states = make_states(snapshot, s6={"present": True})  # something is in it after all
    assert decide(snapshot, states=states).reason == Reason.NO_RETURN_SLOT


def test_charged_first_then_the_longest_charged() -> None:
    snapshot = make_snapshot()
    states = make_states(
        snapshot,
        s1={"charge_state": "charging", "charge_since": NOW - 9 * HOUR},
        s2={"charge_since": NOW - 2 * HOUR},
        s3={"charge_since": NOW - 3 * HOUR},
    )
    assert decide(snapshot, states=states).slot == 3

    only_charging = make_states(
        snapshot, **{f"s{n}": {"charge_state": "charging"} for n in (1, 2, 3)}
    )
    assert decide(snapshot, states=only_charging).granted


@pytest.mark.parametrize(
    "spoil",
    [
        {"door_open": True},
        {"charge_state": "fault"},
        {"held": ("remote", 0)},
        {"held": ("take", 99), "held_by": 8},
        {"present": False},
    ],
    ids=["open", "faulted", "held_remote", "held_take", "ir_empty"],
)
def test_never_an_open_faulted_held_or_empty_slot(spoil: dict) -> None:
    snapshot = make_snapshot()
    states = make_states(snapshot, s1=spoil, s2=spoil)
    assert decide(snapshot, states=states).slot == 3


def test_never_a_slot_out_of_service_or_one_without_a_state() -> None:
    slots = {**make_snapshot().slots}
    slots[1] = replace(slots[1], out_of_service=True)
    snapshot = make_snapshot(slots=slots)
    states = [s for s in make_states(snapshot) if s.number != 2]
    assert decide(snapshot, states=states).slot == 3


def test_never_a_device_that_is_not_available() -> None:
    slots = {**make_snapshot().slots}
    slots[1] = replace(slots[1], asset_status="maintenance")
    slots[2] = replace(slots[2], asset_status="retired")
    assert decide(make_snapshot(slots=slots)).slot == 3


# -- wire form, deltas, signatures -------------------------------------------------------------


def _through_the_wire(snapshot: core.Snapshot) -> core.Snapshot:
    return core.Snapshot.from_data(json.loads(core.canonical(snapshot.to_data())))


def full_snapshot() -> core.Snapshot:
    return make_snapshot(
        badge=badge(valid_until=NOW + DAY, pin_hash="pbkdf2_sha256$1000000$salt$aGFzaA=="),
        holder=ana(loans=(loan(), loan(51, status="reserved", due_at=None))),
    )


def test_the_wire_form_round_trips() -> None:
    snapshot = full_snapshot()

    again = _through_the_wire(snapshot)

    assert again == snapshot
    assert core.canonical(again.to_data()) == core.canonical(snapshot.to_data())


def test_what_is_not_a_snapshot_is_refused() -> None:
    data = full_snapshot().to_data()
    del data["badges"]
    with pytest.raises(ValueError, match="not an access snapshot"):
        core.Snapshot.from_data(data)


def test_a_delta_turns_one_snapshot_into_the_next() -> None:
    old = full_snapshot()
    bob = core.hash_uid(KEY, BOB)
    slots = {n: info for n, info in old.slots.items() if n != 6}
    new = replace(
        old,
        version=4,
        valid_until=NOW + 12 * HOUR,
        badges={
            core.hash_uid(KEY, ANA): badge(status="revoked"),
            bob: core.BadgeInfo(8, "active", NOW - DAY, None),
        },
        holders={**old.holders, 8: core.Holder("Bob", "active")},
        slots={**slots, 1: core.SlotInfo(1, out_of_service=True)},
    )

    delta = core.make_delta(old.to_data(), new.to_data())

    assert "types" not in delta
    assert set(delta["badges"]) == {core.hash_uid(KEY, ANA), bob}
    assert list(delta["holders"]) == ["8"]
    assert delta["slots"] == {"1": [True, True, None, None, None], "6": None}
    applied = old.with_delta(json.loads(core.canonical(delta)))
    assert applied == _through_the_wire(new)
    assert decide(applied).reason == Reason.BADGE_REVOKED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bank": "BANK-B"}, "for bank"),
        ({"base_version": 2}, "follows version"),
        ({"version": 3}, "not newer"),
    ],
)
def test_a_delta_for_another_bank_base_or_an_older_version_is_refused(change, message) -> None:
    old = full_snapshot()
    delta = core.make_delta(old.to_data(), replace(old, version=4).to_data())
    with pytest.raises(ValueError, match=message):
        old.with_delta({**delta, **change})


def test_a_signed_snapshot_verifies_and_a_tampered_one_does_not() -> None:
    private = Ed25519PrivateKey.generate()
    public = core.load_public_key(core.public_key_text(private))
    text = core.canonical(full_snapshot().to_data())
    signature = core.sign(private, text)

    assert core.verify(public, text, signature)
    assert not core.verify(public, text.replace('"BANK-A"', '"BANK-B"'), signature)
    assert not core.verify(public, text, "not base64!")
    other = core.load_public_key(core.public_key_text(Ed25519PrivateKey.generate()))
    assert not core.verify(other, text, signature)

    message = {"type": "access_snapshot", "data": text, "sig": signature}
    assert core.open_signed(public, message, bank="BANK-A")["version"] == 3
    with pytest.raises(ValueError, match="signed for bank"):
        core.open_signed(public, message, bank="BANK-B")
    with pytest.raises(ValueError, match="bad signature"):
        core.open_signed(public, {**message, "data": text + " "}, bank="BANK-A")
