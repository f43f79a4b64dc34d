"""The access decision, in one place, with no Django: the bank worker and the server both run it.

:func:`decide` takes a bank's :class:`Snapshot` (who may take what there, built and signed by
the server), the physical state of the bank's slots, the time and a badge UID, and returns a
:class:`Decision`: granted (which slot, which asset, take or return) or denied with a reason
code. The worker decides every tap with it from the snapshot it holds; the server's own
decision (``access.actions.present_badge``) runs it on a snapshot built from its database.

Times are UTC seconds since the epoch (floats) throughout: the snapshot carries shift windows
as UTC intervals, so no time zone rules are needed at the bank.

The snapshot's wire form (``Snapshot.to_data``/``from_data``), how it is signed
(:func:`sign`/:func:`verify`) and how a delta changes it (:meth:`Snapshot.with_delta`) are here
too, so both sides read and write the same thing. ``docs/device-protocol.md`` describes it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Reason(enum.StrEnum):
    """Why a tap was granted or denied. Codes are stable: kiosks, reports and workers use them."""

    GRANTED_TAKE = "granted_take"
    GRANTED_RETURN = "granted_return"
    BADGE_UNKNOWN = "badge_unknown"
    BADGE_REVOKED = "badge_revoked"
    BADGE_LOST = "badge_lost"
    BADGE_EXPIRED = "badge_expired"
    BADGE_NOT_YET_VALID = "badge_not_yet_valid"
    EMPLOYEE_SUSPENDED = "employee_suspended"
    EMPLOYEE_OFFBOARDED = "employee_offboarded"
    NOT_PERMITTED = "not_permitted"
    OUTSIDE_SHIFT = "outside_shift"
    ITEM_OVERDUE = "item_overdue"
    LIMIT_REACHED = "limit_reached"
    PIN_REQUIRED = "pin_required"
    PIN_INCORRECT = "pin_incorrect"
    NO_ASSET_AVAILABLE = "no_asset_available"
    NO_RETURN_SLOT = "no_return_slot"
    SNAPSHOT_STALE = "snapshot_stale"
    BANK_NOT_READY = "bank_not_ready"


# Short labels (admin, reports) and what the kiosk says in plain words; {name} is the
# holder's first name where known.
REASON_LABELS: dict[str, str] = {
    Reason.GRANTED_TAKE: "Take granted",
    Reason.GRANTED_RETURN: "Return granted",
    Reason.BADGE_UNKNOWN: "Badge not recognised",
    Reason.BADGE_REVOKED: "Badge revoked",
    Reason.BADGE_LOST: "Badge reported lost",
    Reason.BADGE_EXPIRED: "Badge expired",
    Reason.BADGE_NOT_YET_VALID: "Badge not valid yet",
    Reason.EMPLOYEE_SUSPENDED: "Employee suspended",
    Reason.EMPLOYEE_OFFBOARDED: "Employee offboarded",
    Reason.NOT_PERMITTED: "No access rule at this bank",
    Reason.OUTSIDE_SHIFT: "Outside shift",
    Reason.ITEM_OVERDUE: "Item overdue",
    Reason.LIMIT_REACHED: "Already holding the maximum",
    Reason.PIN_REQUIRED: "PIN required",
    Reason.PIN_INCORRECT: "PIN incorrect",
    Reason.NO_ASSET_AVAILABLE: "No asset available",
    Reason.NO_RETURN_SLOT: "No free slot for the return",
    Reason.SNAPSHOT_STALE: "Bank offline too long for takes",
    Reason.BANK_NOT_READY: "Bank has no access list yet",
}
REASON_MESSAGES: dict[str, str] = {
    Reason.BADGE_UNKNOWN: "This badge is not registered. Please see your supervisor.",
    Reason.BADGE_REVOKED: "This badge has been revoked. Please see your supervisor.",
    Reason.BADGE_LOST: "This badge was reported lost. Please see your supervisor for a new one.",
    Reason.BADGE_EXPIRED: "This badge has expired. Please see your supervisor.",
    Reason.BADGE_NOT_YET_VALID: "This badge is not active yet.",
    Reason.EMPLOYEE_SUSPENDED: "Sorry {name}, your access is suspended. Please see your supervisor.",
    Reason.EMPLOYEE_OFFBOARDED: "Access has ended for this badge.",
    Reason.NOT_PERMITTED: "Sorry {name}, you are not set up to take devices from this locker.",
    Reason.OUTSIDE_SHIFT: "Sorry {name}, devices can only be taken during your shift.",
    Reason.ITEM_OVERDUE: "Sorry {name}, please return your overdue device first.",
    Reason.LIMIT_REACHED: "Sorry {name}, you already have the maximum number of devices.",
    Reason.PIN_REQUIRED: "{name}, please enter your PIN for this device.",
    Reason.PIN_INCORRECT: "Sorry {name}, that PIN is not correct.",
    Reason.NO_ASSET_AVAILABLE: "Sorry {name}, no charged device is available here right now. Try another locker.",
    Reason.NO_RETURN_SLOT: "Sorry {name}, there is no free door here for a return. Try another locker.",
    Reason.SNAPSHOT_STALE: "Sorry {name}, this locker has been offline too long to hand out devices. Returns still work.",
    Reason.BANK_NOT_READY: "This locker is starting up. Please try again in a minute.",
}

GRANTED = frozenset({Reason.GRANTED_TAKE, Reason.GRANTED_RETURN})
# Taps the server raises a suspicious-access alert for.
MISUSE = frozenset({Reason.BADGE_REVOKED, Reason.BADGE_LOST, Reason.EMPLOYEE_OFFBOARDED})


class Intent(enum.StrEnum):
    AUTO = "auto"  # return if something is out, otherwise take
    TAKE = "take"
    RETURN = "return"


class Purpose(enum.StrEnum):
    TAKE = "take"
    RETURN = "return"


# Badge, holder and loan states as the snapshot writes them (the server's model values).
BADGE_ACTIVE, BADGE_REVOKED, BADGE_LOST, BADGE_EXPIRED = "active", "revoked", "lost", "expired"
HOLDER_ACTIVE, HOLDER_SUSPENDED, HOLDER_OFFBOARDED = "active", "suspended", "offboarded"
LOAN_RESERVED, LOAN_ACTIVE = "reserved", "active"
ASSET_AVAILABLE = "available"
CHARGED, FAULT = "charged", "fault"


# -- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetTypeInfo:
    name: str
    requires_pin: bool
    max_loan_seconds: float


@dataclass(frozen=True)
class BadgeInfo:
    """One UID: the badge it currently stands for (the active one, else the latest)."""

    holder: int
    status: str
    valid_from: float
    valid_until: float | None
    pin_hash: str = ""


@dataclass(frozen=True)
class Rule:
    """An access rule of the holder's that holds at this bank."""

    types: frozenset[int]
    require_shift: bool
    grace_before: float  # seconds
    grace_after: float
    max_concurrent: int


@dataclass(frozen=True)
class Loan:
    """An open checkout of the holder's, at any bank."""

    checkout: int
    asset_type: int
    status: str  # reserved (being taken) or active (out)
    due_at: float | None
    reserved_at: float
    bank: str  # where it was taken from
    slot: int
    asset: str


@dataclass(frozen=True)
class Holder:
    first_name: str
    status: str
    rules: tuple[Rule, ...] = ()
    # Assigned shift occurrences as UTC [start, end) intervals, grace not included.
    shifts: tuple[tuple[float, float], ...] = ()
    loans: tuple[Loan, ...] = ()


@dataclass(frozen=True)
class SlotInfo:
    """What the server knows of a slot: service state and the device it holds."""

    number: int
    has_charger: bool = True
    out_of_service: bool = False
    asset: str | None = None
    asset_type: int | None = None
    asset_status: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a bank needs to decide taps on its own until ``valid_until``."""

    bank: str
    version: int
    issued_at: float
    valid_until: float
    uid_key: bytes
    types: Mapping[int, AssetTypeInfo]
    badges: Mapping[str, BadgeInfo]  # keyed by hash_uid(uid_key, uid)
    holders: Mapping[int, Holder]
    slots: Mapping[int, SlotInfo]
    return_grace: float = 30 * 60.0

    def badge_for(self, uid: str) -> BadgeInfo | None:
        return self.badges.get(hash_uid(self.uid_key, uid))

    # -- wire form ----------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """The snapshot as plain JSON data (what is signed and sent)."""
        return {
            "bank": self.bank,
            "version": self.version,
            "issued_at": self.issued_at,
            "valid_until": self.valid_until,
            "uid_key": self.uid_key.hex(),
            "return_grace": self.return_grace,
            "types": {str(k): _type_data(v) for k, v in self.types.items()},
            "badges": {k: _badge_data(v) for k, v in self.badges.items()},
            "holders": {str(k): _holder_data(v) for k, v in self.holders.items()},
            "slots": {str(k): _slot_data(v) for k, v in self.slots.items()},
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Snapshot:
        """Read :meth:`to_data`'s form; ``ValueError`` when it is not one."""
        try:
            return cls(
                bank=str(data["bank"]),
                version=int(data["version"]),
                issued_at=float(data["issued_at"]),
                valid_until=float(data["valid_until"]),
                uid_key=bytes.fromhex(data["uid_key"]),
                return_grace=float(data.get("return_grace", 1800)),
                types={int(k): _type_from(v) for k, v in data["types"].items()},
                badges={str(k): _badge_from(v) for k, v in data["badges"].items()},
                holders={int(k): _holder_from(v) for k, v in data["holders"].items()},
                slots={int(k): _slot_from(int(k), v) for k, v in data["slots"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"not an access snapshot: {exc!r}") from None

    def with_delta(self, delta: Mapping[str, Any]) -> Snapshot:
        """This snapshot with a delta applied (see :func:`make_delta`); ``ValueError`` when
        the delta is for another bank, does not follow this version, or is malformed."""
        try:
            if delta["bank"] != self.bank:
                raise ValueError(f"delta for bank {delta['bank']!r}, this is {self.bank!r}")
            if int(delta["base_version"]) != self.version:
                raise ValueError(
                    f"delta follows version {delta['base_version']}, this is {self.version}"
                )
            version = int(delta["version"])
            if version <= self.version:
                raise ValueError(f"delta version {version} is not newer than {self.version}")
            return replace(
                self,
                version=version,
                issued_at=float(delta.get("issued_at", self.issued_at)),
                valid_until=float(delta.get("valid_until", self.valid_until)),
                types=_patched(self.types, delta.get("types", {}), int, _type_from),
                badges=_patched(self.badges, delta.get("badges", {}), str, _badge_from),
                holders=_patched(self.holders, delta.get("holders", {}), int, _holder_from),
                slots=_patched(self.slots, delta.get("slots", {}), int, None, slot_numbers=True),
            )
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"not an access delta: {exc!r}") from None


def make_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The delta that turns snapshot data ``old`` into ``new`` (both :meth:`Snapshot.to_data`).

    Entries that changed are sent whole; an entry that went is sent as ``null``.
    """
    delta: dict[str, Any] = {
        "bank": new["bank"],
        "base_version": old["version"],
        "version": new["version"],
        "issued_at": new["issued_at"],
        "valid_until": new["valid_until"],
    }
    for part in ("types", "badges", "holders", "slots"):
        before, after = old[part], new[part]
        changes = {k: v for k, v in after.items() if before.get(k) != v}
        changes.update({k: None for k in before if k not in after})
        if changes:
            delta[part] = changes
    return delta


def _patched(current, changes, key_type, parse, *, slot_numbers=False):
    result = dict(current)
    for raw_key, value in changes.items():
        key = key_type(raw_key)
        if value is None:
            result.pop(key, None)
        elif slot_numbers:
            result[key] = _slot_from(key, value)
        else:
            result[key] = parse(value)
    return result


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _type_data(t: AssetTypeInfo) -> list:
    return [t.name, t.requires_pin, t.max_loan_seconds]


def _type_from(v: list) -> AssetTypeInfo:
    return AssetTypeInfo(str(v[0]), bool(v[1]), float(v[2]))


def _badge_data(b: BadgeInfo) -> list:
    return [b.holder, b.status, b.valid_from, b.valid_until, b.pin_hash]


def _badge_from(v: list) -> BadgeInfo:
    return BadgeInfo(int(v[0]), str(v[1]), float(v[2]), _opt(v[3]), str(v[4] or ""))


def _holder_data(h: Holder) -> dict[str, Any]:
    return {
        "name": h.first_name,
        "status": h.status,
        "rules": [
            [sorted(r.types), r.require_shift, r.grace_before, r.grace_after, r.max_concurrent]
            for r in h.rules
        ],
        "shifts": [[s, e] for s, e in h.shifts],
        "loans": [
            [
                lo.checkout,
                lo.asset_type,
                lo.status,
                lo.due_at,
                lo.reserved_at,
                lo.bank,
                lo.slot,
                lo.asset,
            ]
            for lo in h.loans
        ],
    }


def _holder_from(v: Mapping[str, Any]) -> Holder:
    return Holder(
        first_name=str(v["name"]),
        status=str(v["status"]),
        rules=tuple(
            Rule(frozenset(int(t) for t in r[0]), bool(r[1]), float(r[2]), float(r[3]), int(r[4]))
            for r in v["rules"]
        ),
        shifts=tuple((float(s), float(e)) for s, e in v["shifts"]),
        loans=tuple(
            Loan(
                int(lo[0]),
                int(lo[1]),
                str(lo[2]),
                _opt(lo[3]),
                float(lo[4]),
                str(lo[5]),
                int(lo[6]),
                str(lo[7]),
            )
            for lo in v["loans"]
        ),
    )


def _slot_data(s: SlotInfo) -> list:
    return [s.has_charger, s.out_of_service, s.asset, s.asset_type, s.asset_status]


def _slot_from(number: int, v: list) -> SlotInfo:
    return SlotInfo(
        number,
        bool(v[0]),
        bool(v[1]),
        None if v[2] is None else str(v[2]),
        None if v[3] is None else int(v[3]),
        None if v[4] is None else str(v[4]),
    )


# -- signing ---------------------------------------------------------------------------------


def canonical(data: Mapping[str, Any]) -> str:
    """The one text form of ``data`` that is signed and stored."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(private_key: Any, text: str) -> str:
    """Ed25519 signature of ``text`` (a ``cryptography`` private key), base64."""
    return base64.b64encode(private_key.sign(text.encode())).decode()


def load_public_key(encoded: str) -> Any:
    """The server's public key as ``create_bank`` prints it (base64 of the 32 raw bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from None


def public_key_text(private_key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def verify(public_key: Any, text: str, signature: str) -> bool:
    """Whether ``signature`` is the server's over exactly ``text``."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signature, validate=True), text.encode())
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def open_signed(public_key: Any, message: Mapping[str, Any], *, bank: str) -> dict[str, Any]:
    """The data of a signed ``access_snapshot``/``access_delta`` message, checked.

    ``ValueError`` for a bad signature or a message for another bank.
    """
    text, signature = message.get("data"), message.get("sig")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise ValueError("a signed message needs data and sig")
    if not verify(public_key, text, signature):
        raise ValueError("bad signature")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("signed data is not an object")
    if data.get("bank") != bank:
        raise ValueError(f"signed for bank {data.get('bank')!r}, this is {bank!r}")
    return data


# -- UIDs and PINs --------------------------------------------------------------------------


def hash_uid(key: bytes, uid: str) -> str:
    """The keyed hash a snapshot lists a badge under (so it lists no badge number in clear)."""
    return hmac.new(key, uid.encode(), hashlib.sha256).hexdigest()[:32]


def check_pin(pin: str | None, encoded: str) -> bool:
    """Whether ``pin`` matches a Django password hash (PBKDF2-SHA256 or SHA1), in constant time."""
    if not pin or not encoded:
        return False
    algorithm, _, rest = encoded.partition("$")
    if algorithm in ("pbkdf2_sha256", "pbkdf2_sha1"):
        try:
            iterations, salt, expected = rest.split("$", 2)
            digest = hashlib.pbkdf2_hmac(
                algorithm.removeprefix("pbkdf2_"), pin.encode(), salt.encode(), int(iterations)
            )
        except ValueError:
            return False
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    if algorithm == "md5":  # Django's fast hasher, used by test settings only
        salt, _, expected = rest.partition("$")
        digest = hashlib.md5((salt + pin).encode(), usedforsecurity=False).hexdigest()
        return hmac.compare_digest(digest, expected)
    return False


# -- the physical state of a bank's slots, as the decision needs it ----------------------------


@dataclass(frozen=True)
class SlotState:
    """What the bank sees of one slot right now."""

    number: int
    door_open: bool = False
    present: bool | None = None
    charge_state: str = "unknown"
    charge_since: float = 0.0
    # Held for a take or return under way (a granted tap whose door has not closed yet):
    # ("take" | "return" | "remote", checkout id, or 0 when there is none yet).
    held: tuple[str, int] | None = None
    held_by: int | None = None  # the holder it is held for


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: Reason
    holder: int | None = None
    first_name: str = ""
    purpose: Purpose | None = None
    slot: int | None = None
    asset: str | None = None
    asset_type: int | None = None
    checkout: int | None = None  # the loan being returned (or the pending take shown again)
    shift_end: float | None = None  # the end of the shift that allows a take (None: no bound)
    due_at: float | None = None
    again: bool = False  # the same door shown again to someone already holding it
    type_name: str = ""
    # For the server's records: the allowed types with their shift ends (take only).
    allowed: Mapping[int, float | None] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """What the kiosk says."""
        if self.granted and self.purpose == Purpose.TAKE:
            return (
                f"Hi {self.first_name} — door {self.slot} is open, take "
                f"{self.type_name.lower()} {self.asset}"
            )
        if self.granted:
            return (
                f"Thanks {self.first_name} — door {self.slot} is open, put {self.asset} back "
                "and close the door"
            )
        return REASON_MESSAGES.get(self.reason, REASON_LABELS.get(self.reason, "")).format(
            name=self.first_name
        )


class _Denied(Exception):
    def __init__(self, reason: Reason) -> None:
        self.reason = reason


def decide(
    snapshot: Snapshot | None,
    slots: Iterable[SlotState],
    now: float,
    uid: str,
    *,
    intent: Intent = Intent.AUTO,
    pin: str | None = None,
) -> Decision:
    """Decide a tap of ``uid`` at ``snapshot``'s bank at ``now`` (DESIGN §4.1-4.3).

    ``slots`` is the physical state of the bank's slots. A slot absent from the snapshot, out
    of service, faulted, open or held is never chosen.
    """
    if snapshot is None:
        return Decision(False, Reason.BANK_NOT_READY)
    badge = snapshot.badge_for(uid)
    if badge is None:
        return Decision(False, Reason.BADGE_UNKNOWN)
    holder = snapshot.holders.get(badge.holder)
    if holder is None:
        return Decision(False, Reason.BADGE_UNKNOWN)
    try:
        return _decide(snapshot, {s.number: s for s in slots}, now, badge, holder, intent, pin)
    except _Denied as denied:
        return Decision(False, denied.reason, badge.holder, holder.first_name)


def _check_badge(badge: BadgeInfo, holder: Holder, now: float) -> None:
    if badge.status == BADGE_REVOKED:
        raise _Denied(
            Reason.EMPLOYEE_OFFBOARDED
            if holder.status == HOLDER_OFFBOARDED
            else Reason.BADGE_REVOKED
        )
    if badge.status == BADGE_LOST:
        raise _Denied(Reason.BADGE_LOST)
    if badge.status == BADGE_EXPIRED or (
        badge.valid_until is not None and badge.valid_until <= now
    ):
        raise _Denied(Reason.BADGE_EXPIRED)
    if badge.valid_from > now:
        raise _Denied(Reason.BADGE_NOT_YET_VALID)
    if holder.status == HOLDER_OFFBOARDED:
        raise _Denied(Reason.EMPLOYEE_OFFBOARDED)
    if holder.status == HOLDER_SUSPENDED:
        raise _Denied(Reason.EMPLOYEE_SUSPENDED)


def _decide(
    snapshot: Snapshot,
    states: Mapping[int, SlotState],
    now: float,
    badge: BadgeInfo,
    holder: Holder,
    intent: Intent,
    pin: str | None,
) -> Decision:
    _check_badge(badge, holder, now)
    granted = {"holder": badge.holder, "first_name": holder.first_name}
    loans = sorted(holder.loans, key=lambda lo: (lo.reserved_at, lo.checkout))
    active = [lo for lo in loans if lo.status == LOAN_ACTIVE]

    # A second tap while the door waits: show the same door again, no new hold.
    for state in states.values():
        if (
            state.held_by == badge.holder
            and state.held is not None
            and state.held[0] == Purpose.TAKE
        ):
            info = snapshot.slots.get(state.number)
            return Decision(
                True,
                Reason.GRANTED_TAKE,
                purpose=Purpose.TAKE,
                slot=state.number,
                asset=info.asset if info else None,
                asset_type=info.asset_type if info else None,
                checkout=state.held[1] if state.held[1] > 0 else None,
                again=True,
                type_name=_type_name(snapshot, info.asset_type if info else None),
                **granted,
            )

    if active and intent in (Intent.AUTO, Intent.RETURN):
        # Return the item due first.
        loan = min(active, key=lambda lo: lo.due_at if lo.due_at is not None else lo.reserved_at)
        slot, again = _return_slot(snapshot, states, loan)
        if slot is None:
            raise _Denied(Reason.NO_RETURN_SLOT)
        return Decision(
            True,
            Reason.GRANTED_RETURN,
            purpose=Purpose.RETURN,
            slot=slot,
            asset=loan.asset,
            asset_type=loan.asset_type,
            checkout=loan.checkout,
            due_at=loan.due_at,
            again=again,
            type_name=_type_name(snapshot, loan.asset_type),
            **granted,
        )
    if intent == Intent.RETURN:
        raise _Denied(Reason.NO_RETURN_SLOT)
    if now >= snapshot.valid_until:
        # Past its validity the snapshot may miss a revocation: no new takes, returns go on.
        raise _Denied(Reason.SNAPSHOT_STALE)

    if not holder.rules:
        raise _Denied(Reason.NOT_PERMITTED)
    in_window: list[tuple[Rule, float | None]] = []
    for rule in holder.rules:
        if not rule.require_shift:
            in_window.append((rule, None))
            continue
        end = _shift_end(holder.shifts, now, rule.grace_before, rule.grace_after)
        if end is not None:
            in_window.append((rule, end))
    if not in_window:
        raise _Denied(Reason.OUTSIDE_SHIFT)

    if any(lo.due_at is not None and lo.due_at < now for lo in active):
        raise _Denied(Reason.ITEM_OVERDUE)

    held_by_type: dict[int, int] = {}
    for loan in loans:
        held_by_type[loan.asset_type] = held_by_type.get(loan.asset_type, 0) + 1
    allowed: dict[int, float | None] = {}
    for rule, shift_end in in_window:
        if sum(held_by_type.get(t, 0) for t in rule.types) >= rule.max_concurrent:
            continue
        for type_id in rule.types:
            allowed[type_id] = _later(allowed.get(type_id, shift_end), shift_end)
    if not allowed:
        raise _Denied(Reason.LIMIT_REACHED)

    # Only types still allowed (under their limit): a PIN is never asked for a device that
    # the right PIN would not give.
    pin_types = {
        t for t in allowed if (info := snapshot.types.get(t)) is not None and info.requires_pin
    }
    pin_ok = pin is not None and check_pin(pin, badge.pin_hash)
    usable = set(allowed) if pin_ok else set(allowed) - pin_types
    choice = _take_slot(snapshot, states, usable) if usable else None
    if choice is None:
        # Only a PIN-protected device is left: ask for (or reject) the PIN rather than say "none".
        if pin_types and not pin_ok and _take_slot(snapshot, states, pin_types) is not None:
            raise _Denied(Reason.PIN_REQUIRED if pin is None else Reason.PIN_INCORRECT)
        raise _Denied(Reason.NO_ASSET_AVAILABLE)
    info = snapshot.slots[choice]
    assert info.asset_type is not None
    shift_end = allowed[info.asset_type]
    return Decision(
        True,
        Reason.GRANTED_TAKE,
        purpose=Purpose.TAKE,
        slot=choice,
        asset=info.asset,
        asset_type=info.asset_type,
        shift_end=shift_end,
        due_at=due_at_for(snapshot, info.asset_type, now, shift_end),
        type_name=_type_name(snapshot, info.asset_type),
        allowed={t: allowed[t] for t in usable},
        **granted,
    )


def due_at_for(
    snapshot: Snapshot, asset_type: int, taken_at: float, shift_end: float | None
) -> float:
    """Shift end plus the return grace, never later than the type's maximum loan."""
    info = snapshot.types.get(asset_type)
    cap = taken_at + (info.max_loan_seconds if info else 12 * 3600.0)
    if shift_end is None:
        return cap
    return min(shift_end + snapshot.return_grace, cap)


def _type_name(snapshot: Snapshot, asset_type: int | None) -> str:
    info = snapshot.types.get(asset_type) if asset_type is not None else None
    return info.name if info else "device"


def _shift_end(
    shifts: Iterable[tuple[float, float]], now: float, before: float, after: float
) -> float | None:
    """The end of the assigned occurrence whose window (with grace) holds ``now``; of several,
    the one ending last (a later due time)."""
    best: float | None = None
    for start, end in shifts:
        if start - before <= now < end + after and (best is None or end > best):
            best = end
    return best


def _later(a: float | None, b: float | None) -> float | None:
    # None means "no shift bound" (a rule without shift), which is the latest of all.
    if a is None or b is None:
        return None
    return max(a, b)


def _usable(state: SlotState | None, info: SlotInfo) -> bool:
    """Neither out of service, faulted, open nor held."""
    return (
        state is not None
        and not info.out_of_service
        and state.charge_state != FAULT
        and not state.door_open
        and state.held is None
    )


def dispensable(
    snapshot: Snapshot, states: Mapping[int, SlotState], types: Iterable[int]
) -> list[int]:
    """Slots holding an available device of one of ``types``, best first: charged before
    anything else, then the longest charged, so devices rotate and leave as full as they can."""
    wanted = set(types)
    candidates = [
        (state.charge_state != CHARGED, state.charge_since, number)
        for number, info in snapshot.slots.items()
        if info.asset is not None
        and info.asset_status == ASSET_AVAILABLE
        and info.asset_type in wanted
        and _usable(state := states.get(number), info)
        and state.present is not False
    ]
    return [number for *_, number in sorted(candidates)]


def _take_slot(snapshot: Snapshot, states: Mapping[int, SlotState], types: set[int]) -> int | None:
    best = dispensable(snapshot, states, types)
    return best[0] if best else None


def free_for_return(snapshot: Snapshot, states: Mapping[int, SlotState]) -> list[int]:
    """Empty charging slots that can take a device back, by number."""
    return sorted(
        number
        for number, info in snapshot.slots.items()
        if info.asset is None
        and info.has_charger
        and _usable(state := states.get(number), info)
        and state.present is not True
    )


def _return_slot(
    snapshot: Snapshot, states: Mapping[int, SlotState], loan: Loan
) -> tuple[int | None, bool]:
    """(slot, again): a door already held for this loan's return, else a free one, preferring
    the slot the device came from."""
    for state in states.values():
        if state.held == (Purpose.RETURN, loan.checkout):
            return state.number, True
    free = free_for_return(snapshot, states)
    if loan.bank == snapshot.bank and loan.slot in free:
        return loan.slot, False
    return (free[0] if free else None), False
