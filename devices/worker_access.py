"""What the bank worker decides taps from: the server's signed access snapshot, the holds under
way at the bank, and its local notes of takes and returns the server has not confirmed yet.

Pure logic, no I/O and no Django: :class:`~devices.worker.BankWorker` keeps these under its
state lock and stores them in its journal (``devices.worker_journal``).

- A snapshot or delta is accepted only when its Ed25519 signature is the server's, it is for
  this bank and it is newer than the one held (:func:`open_snapshot`, :func:`open_delta`);
  a delta only on the version it names as its base (:class:`DeltaBaseMismatch` otherwise).
- A granted tap makes a :class:`Hold` on its slot until its door has opened and closed, or
  until the door has not opened within the reservation timeout.
- A completed take or return makes a :class:`Note`, applied on top of the server's snapshot
  (:func:`with_notes`) so that limits and returns hold offline; a note goes once the server
  has confirmed it (:func:`still_unconfirmed`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from access import core
from devices.worker_journal import ACCESS_DELTA, ACCESS_SNAPSHOT, SignedEntry

REMOTE = "remote"  # a hold for a server command (a remote open), not for a tap


class AccessRefused(ValueError):
    """A signed access message that must not be used (bad signature, other bank, older)."""


class DeltaBaseMismatch(AccessRefused):
    """A delta that does not follow the version held: the whole snapshot is needed."""


def open_snapshot(
    public_key: Any, bank: str, message: Mapping[str, Any], held: core.Snapshot | None
) -> core.Snapshot:
    """The snapshot an ``access_snapshot`` message carries, checked; :class:`AccessRefused`."""
    if public_key is None:
        raise AccessRefused("no server key to check it with (--server-key)")
    try:
        data = core.open_signed(public_key, message, bank=bank)
        snapshot = core.Snapshot.from_data(data)
    except ValueError as exc:
        raise AccessRefused(str(exc)) from None
    if held is not None and snapshot.version <= held.version:
        raise AccessRefused(f"version {snapshot.version} is not newer than {held.version}")
    return snapshot


def open_delta(
    public_key: Any, bank: str, message: Mapping[str, Any], base: core.Snapshot | None
) -> core.Snapshot:
    """``base`` with the ``access_delta`` message applied, checked; :class:`AccessRefused`,
    or :class:`DeltaBaseMismatch` when the delta does not follow ``base``."""
    if public_key is None:
        raise AccessRefused("no server key to check it with (--server-key)")
    try:
        data = core.open_signed(public_key, message, bank=bank)
    except ValueError as exc:
        raise AccessRefused(str(exc)) from None
    follows = data.get("base_version")
    if base is None or not isinstance(follows, int) or follows != base.version:
        held = None if base is None else base.version
        raise DeltaBaseMismatch(f"delta follows version {follows!r}, this bank holds {held}")
    try:
        return base.with_delta(data)
    except ValueError as exc:
        raise AccessRefused(str(exc)) from None


def restore(public_key: Any, bank: str, entries: Sequence[SignedEntry]) -> core.Snapshot | None:
    """The snapshot the journal's entries make, every signature checked again.

    :class:`AccessRefused` when any entry fails: a journal that was tampered with (or a key
    that changed) gives no snapshot at all rather than an older one.
    """
    if not entries:
        return None
    first, *deltas = entries
    if first.kind != ACCESS_SNAPSHOT:
        raise AccessRefused(f"the journal's access entries start with a {first.kind}")
    snapshot = open_snapshot(public_key, bank, first.as_message(), None)
    for entry in deltas:
        if entry.kind != ACCESS_DELTA:
            raise AccessRefused(f"unexpected {entry.kind} after the snapshot")
        snapshot = open_delta(public_key, bank, entry.as_message(), snapshot)
    return snapshot


# -- holds -------------------------------------------------------------------------------------


@dataclass
class Hold:
    """A slot held for a granted tap (or a remote open) until its door opens and closes."""

    slot: int
    purpose: str  # "take", "return" or "remote"
    holder: int | None = None
    checkout: int | None = None  # the loan being returned
    asset: str | None = None
    asset_type: int | None = None
    due_at: float | None = None  # of a take, from the decision
    started_at: float = 0.0  # wall clock (kept across restarts)
    started: float = 0.0  # monotonic (for the timeout)
    opened: bool = False

    @property
    def core_held(self) -> tuple[str, int]:
        """As :class:`access.core.SlotState` wants it."""
        return (self.purpose, self.checkout or 0)

    def expired(self, now_monotonic: float, timeout: float) -> bool:
        """Whether the door never opened within ``timeout`` seconds."""
        return not self.opened and now_monotonic - self.started >= timeout

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        del data["started"]
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any], now_wall: float, now_monotonic: float) -> Hold:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields.pop("started", None)
        hold = cls(**fields)
        # Monotonic time does not survive a restart: carry the age over from the wall clock.
        hold.started = now_monotonic - max(0.0, now_wall - hold.started_at)
        return hold


class Outcome(enum.StrEnum):
    """How a hold ended, as the kiosk is told (``<purpose>_<outcome>``)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"


def outcome_on_close(hold: Hold, present: bool | None) -> Outcome:
    """How a held door closing ends the hold: the same rule the server applies (a take needs
    the device gone, a return the device in)."""
    if hold.purpose == core.Purpose.TAKE:
        return Outcome.COMPLETED if present is False else Outcome.CANCELLED
    if hold.purpose == core.Purpose.RETURN:
        return Outcome.COMPLETED if present else Outcome.CANCELLED
    return Outcome.COMPLETED


# -- local notes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A take or return completed at this bank that the server has not confirmed yet.

    ``seq`` is the journal event that completed it; ``checkout`` of a take is ``-seq`` until
    the server's snapshot brings the real one.
    """

    kind: str  # "take" or "return"
    seq: int
    holder: int
    slot: int
    asset: str
    asset_type: int
    checkout: int
    due_at: float | None
    at: float

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Note:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def note_for(hold: Hold, seq: int, at: float) -> Note | None:
    """The note a completed take or return leaves (None for a remote open)."""
    if hold.purpose not in (core.Purpose.TAKE, core.Purpose.RETURN):
        return None
    if hold.holder is None or hold.asset is None or hold.asset_type is None:
        return None
    take = hold.purpose == core.Purpose.TAKE
    return Note(
        kind=str(hold.purpose),
        seq=seq,
        holder=hold.holder,
        slot=hold.slot,
        asset=hold.asset,
        asset_type=hold.asset_type,
        checkout=-seq if take else (hold.checkout or 0),
        due_at=hold.due_at if take else None,
        at=at,
    )


def with_notes(snapshot: core.Snapshot | None, notes: Iterable[Note]) -> core.Snapshot | None:
    """``snapshot`` as the bank sees it after its own unconfirmed takes and returns."""
    notes = list(notes)
    if snapshot is None or not notes:
        return snapshot
    holders = dict(snapshot.holders)
    slots = dict(snapshot.slots)
    for note in notes:
        holder = holders.get(note.holder)
        info = slots.get(note.slot)
        if note.kind == core.Purpose.TAKE:
            if holder is not None:
                loan = core.Loan(
                    note.checkout,
                    note.asset_type,
                    core.LOAN_ACTIVE,
                    note.due_at,
                    note.at,
                    snapshot.bank,
                    note.slot,
                    note.asset,
                )
                others = tuple(lo for lo in holder.loans if lo.asset != note.asset)
                holders[note.holder] = replace(holder, loans=(*others, loan))
            if info is not None and info.asset == note.asset:
                slots[note.slot] = replace(info, asset=None, asset_type=None, asset_status=None)
        else:
            if holder is not None:
                loans = tuple(lo for lo in holder.loans if lo.checkout != note.checkout)
                holders[note.holder] = replace(holder, loans=loans)
            if info is not None:
                slots[note.slot] = replace(
                    info,
                    asset=note.asset,
                    asset_type=note.asset_type,
                    asset_status=core.ASSET_AVAILABLE,
                )
    return replace(snapshot, holders=holders, slots=slots)


def still_unconfirmed(
    snapshot: core.Snapshot, notes: Iterable[Note], acked: Callable[[int], bool]
) -> list[Note]:
    """The notes a newly received ``snapshot`` does not make redundant.

    A note goes when the server already shows it (the taken asset among the holder's active
    loans; the returned loan gone), or when the server had acknowledged its event before this
    snapshot came (it was built after the event was applied). Until then it stays: a snapshot
    sent on reconnect is built before the journal's events are replayed.
    """
    keep = []
    for note in notes:
        if acked(note.seq):
            continue
        holder = snapshot.holders.get(note.holder)
        loans = holder.loans if holder is not None else ()
        if note.kind == core.Purpose.TAKE and any(
            lo.asset == note.asset and lo.status == core.LOAN_ACTIVE for lo in loans
        ):
            continue  # a loan only reserved is a tap the server has, not yet the take
        if (
            note.kind == core.Purpose.RETURN
            and note.checkout > 0
            and all(lo.checkout != note.checkout for lo in loans)
        ):
            continue
        keep.append(note)
    return keep
