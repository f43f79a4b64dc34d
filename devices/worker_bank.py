"""The bank as its worker sees it: slots, doors, holds, the access snapshot; and the taps it
decides from them.

:class:`BankState` is the part of :class:`devices.worker.BankWorker` that needs no network:
it reads the lock boards and the charge meter, journals what changed, decides every badge tap
with ``access.core.decide`` and unlocks a granted door at once, keeps the holds under way and
the local notes of takes and returns (``devices.worker_access``), and takes in the server's
signed snapshots and deltas. Everything here is guarded by one lock, held across a decision
and the journal commit of the tap, and across applying a reading and the commit of what it
showed, so that a snapshot of the doors, the poller and a tap never interleave: every change
after a snapshot gets a later seq than the snapshot. The boards are read outside the lock (a
tap never waits for a board that times out); a reading older than the last snapshot of the
doors is dropped.

No Django here: the worker runs without the project's database or settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from access import core
from devices import worker_access
from devices.charge import ChargeThresholds, ChargeTracker
from devices.drivers.base import BoardStatus, LockBoardError, LockBus
from devices.wire import MessageType, check_uid
from devices.worker_access import REMOTE, AccessRefused, DeltaBaseMismatch, Hold, Note, Outcome
from devices.worker_config import (
    DEFAULT_RESERVATION_TIMEOUT_SECONDS,
    BadMessage,
    BankConfig,
    SlotConfig,
    parse_config,
)
from devices.worker_journal import ACCESS_DELTA, ACCESS_SNAPSHOT, Journal, iso, utc_now

log = logging.getLogger("devices.worker")


@dataclass(frozen=True)
class Tap:
    """A badge tap as the worker decided and journaled it."""

    seq: int  # of the journaled ``tap`` event
    uid: str
    decision: core.Decision

    @property
    def granted(self) -> bool:
        return self.decision.granted

    @property
    def reason(self) -> str:
        return str(self.decision.reason)


@dataclass
class _SlotState:
    # The state last reported to the server (in a snapshot or event); None = never reported.
    door_open: bool | None = None
    present: bool | None = None
    charge_state: str | None = None
    current_ma: int | None = None
    tracker: ChargeTracker | None = None


class ChargeMeter(Protocol):
    """What the worker needs of a charge meter: current per slot in mA (None = no reading)."""

    def read(self) -> Mapping[int, int | None]: ...


# A hold that ended: (hold, index of the event that ended it or None, outcome).
_Ending = tuple[Hold, int | None, Outcome]


class BankState:
    """One bank's slots, holds and access snapshot; see the module docstring.

    ``server_key`` is the server's public key (``access.core.load_public_key``), or None:
    then no snapshot is ever trusted and every tap is denied ``bank_not_ready``. ``wake`` is
    called after new events are journaled, ``publish`` with every message for the local
    kiosk feed; both from any thread, and neither may block.
    """

    def __init__(
        self,
        bank: str,
        journal: Journal,
        lock_bus: LockBus,
        *,
        server_key: Any,
        charge_meter: ChargeMeter | None = None,
        charge_thresholds: ChargeThresholds | None = None,
        wake: Callable[[], None] = lambda: None,
        publish: Callable[[Mapping[str, Any]], None] = lambda message: None,
    ) -> None:
        self.bank = bank
        self.journal = journal
        self.lock_bus = lock_bus
        self.charge_meter = charge_meter
        self.charge_thresholds = charge_thresholds or ChargeThresholds()
        self._server_key = server_key
        self._wake = wake
        self._publish = publish
        self._state_lock = threading.RLock()
        self.config: BankConfig | None = None  # the last applied (or, before, the journal's)
        self._slots: tuple[SlotConfig, ...] = ()
        self._states: dict[int, _SlotState] = {}
        self._generation = 0  # of the slot states: a snapshot of the doors starts a new one
        self._board_ok: dict[int, bool] = {}
        self._currents: dict[int, int | None] = {}
        self._reservation_timeout = DEFAULT_RESERVATION_TIMEOUT_SECONDS
        self._base: core.Snapshot | None = None  # as the server signed it
        self._notes: list[Note] = []
        self._snapshot: core.Snapshot | None = None  # with the notes: what taps are decided on
        self._holds: dict[int, Hold] = {}
        self._restore()

    @property
    def slots(self) -> tuple[SlotConfig, ...]:
        """The configured slots (empty until a configuration is applied)."""
        with self._state_lock:
            return self._slots

    @property
    def snapshot(self) -> core.Snapshot | None:
        """The access snapshot taps are decided on (the server's, with local notes)."""
        with self._state_lock:
            return self._snapshot

    @property
    def snapshot_version(self) -> int | None:
        """The version of the server's snapshot held (None without one)."""
        with self._state_lock:
            return None if self._base is None else self._base.version

    @property
    def holds(self) -> dict[int, Hold]:
        """A copy of the holds under way, by slot."""
        with self._state_lock:
            return dict(self._holds)

    @property
    def notes(self) -> list[Note]:
        """The local notes of takes and returns the server has not confirmed yet."""
        with self._state_lock:
            return list(self._notes)

    # -- start-up from the journal -----------------------------------------------------------------

    def _restore(self) -> None:
        entries = self.journal.access_entries()
        try:
            self._base = worker_access.restore(self._server_key, self.bank, entries)
        except AccessRefused as exc:
            log.error(
                "the access snapshot in the journal %s is refused (%s); every tap is denied "
                "until the server sends a new one",
                self.journal.path,
                exc,
            )
            self._base = None
        if self._base is not None:
            log.info("access snapshot version %d restored from the journal", self._base.version)
        local = self.journal.local_state()
        wall, mono = time.time(), time.monotonic()
        try:
            self._notes = [Note.from_data(n) for n in local.get("notes", [])]
            holds = [Hold.from_data(h, wall, mono) for h in local.get("holds", [])]
        except (TypeError, ValueError) as exc:
            log.error("ignoring the journal's holds and notes: %s", exc)
            self._notes, holds = [], []
        self._holds = {hold.slot: hold for hold in holds}
        self._snapshot = worker_access.with_notes(self._base, self._notes)
        stored = self.journal.config()
        if stored is not None:
            try:
                self.config = parse_config(stored)
            except BadMessage as exc:
                log.error("ignoring the journal's configuration: %s", exc)

    # -- taps ------------------------------------------------------------------------------------

    def decide_tap(self, uid: str | bytes) -> Tap:
        """Decide a badge tap, journal it, and unlock its door when granted; from any thread.

        ``ValueError`` for something no badge UID can be. The unlock frame goes out once the
        ``tap`` event is committed, without waiting for the server.
        """
        uid = check_uid(uid)
        unlock: tuple[int, int] | None = None
        with self._state_lock:
            now = time.time()
            decision = self._decide(uid, now)
            event = {
                "type": str(MessageType.TAP),
                "at": iso(datetime.fromtimestamp(now, UTC)),
                "uid": uid,
                "granted": decision.granted,
                "reason": str(decision.reason),
                "purpose": None if decision.purpose is None else str(decision.purpose),
                "slot": decision.slot,
                "asset": decision.asset,
                "checkout": decision.checkout,
                "holder": decision.holder,
                "version": None if self._base is None else self._base.version,
                "due_at": decision.due_at,
                "shift_end": decision.shift_end,
                "again": decision.again,
            }
            local = None
            if decision.granted and not decision.again and decision.slot is not None:
                cfg = self._slot_config(decision.slot)
                assert cfg is not None  # decide() only picks slots that have a state
                self._holds[cfg.slot] = Hold(
                    slot=cfg.slot,
                    purpose=str(decision.purpose),
                    holder=decision.holder,
                    checkout=decision.checkout,
                    asset=decision.asset,
                    asset_type=decision.asset_type,
                    due_at=decision.due_at,
                    started_at=now,
                    started=time.monotonic(),
                )
                local = {"holds": self._holds_data()}
                unlock = (cfg.board, cfg.lock_index)
            try:
                seq = self.journal.append(event, local=local)
            except BaseException:
                if unlock is not None and decision.slot is not None:
                    self._holds.pop(decision.slot, None)
                raise
        if unlock is not None:
            self._unlock_for_tap(decision.slot, *unlock)
        self._wake()
        self._publish(
            {
                "type": "tap",
                "granted": decision.granted,
                "reason": str(decision.reason),
                "message": decision.message,
                "first_name": decision.first_name or None,
                "purpose": None if decision.purpose is None else str(decision.purpose),
                "slot": decision.slot,
                "asset": decision.asset,
            }
        )
        log.info(
            "badge %s: %s%s (seq %d, slot %s, snapshot %s)",
            uid,
            decision.reason,
            " again" if decision.again else "",
            seq,
            decision.slot,
            event["version"],
        )
        return Tap(seq, uid, decision)

    def _decide(self, uid: str, now: float) -> core.Decision:
        """The decision on a tap, from the snapshot with the local notes (state lock held)."""
        return core.decide(self._snapshot, self._slot_states(), now, uid)

    # -- the access snapshot -------------------------------------------------------------------

    def accept_access(self, message: Mapping[str, Any]) -> bool:
        """Verify, store and use a signed snapshot or delta; True to ask for the whole snapshot.

        Only the connection's receive loop calls this, one message at a time, so the snapshot
        it checks against cannot change under it.
        """
        whole = message["type"] == MessageType.ACCESS_SNAPSHOT
        base = self._base
        try:
            if whole:
                new = worker_access.open_snapshot(self._server_key, self.bank, message, base)
            else:
                new = worker_access.open_delta(self._server_key, self.bank, message, base)
        except DeltaBaseMismatch as exc:
            log.warning("access delta not applied: %s; asking for the whole snapshot", exc)
            return True
        except AccessRefused as exc:
            log.error(
                "refused an %s from the server: %s; keeping snapshot version %s",
                message["type"],
                exc,
                None if base is None else base.version,
            )
            return False
        with self._state_lock:
            notes = worker_access.still_unconfirmed(
                new, self._notes, lambda seq: not self.journal.is_pending(seq)
            )
            self.journal.store_access(
                ACCESS_SNAPSHOT if whole else ACCESS_DELTA,
                message["data"],
                message["sig"],
                local={"notes": [n.to_data() for n in notes]},
            )
            self._base, self._notes = new, notes
            self._snapshot = worker_access.with_notes(new, notes)
        log.info(
            "access %s version %d (valid until %s), %d local note(s) kept",
            "snapshot" if whole else "delta",
            new.version,
            iso(datetime.fromtimestamp(new.valid_until, UTC)),
            len(notes),
        )
        return False

    # -- holds -------------------------------------------------------------------------------------

    def _holds_data(self) -> list[dict[str, Any]]:
        """The holds as the journal keeps them (remote holds are the server's to track)."""
        return [h.to_data() for h in self._holds.values() if h.purpose != REMOTE]

    def _slot_config(self, slot: int) -> SlotConfig | None:
        return next((cfg for cfg in self._slots if cfg.slot == slot), None)

    def _slot_states(self) -> list[core.SlotState]:
        """What the decision core needs of every slot whose state is known now."""
        states = []
        for cfg in self._slots:
            state = self._states.get(cfg.slot)
            if state is None or state.door_open is None or not self._board_ok.get(cfg.board, True):
                continue  # never read, or its board does not answer: never chosen
            hold = self._holds.get(cfg.slot)
            tracker = state.tracker
            states.append(
                core.SlotState(
                    number=cfg.slot,
                    door_open=state.door_open,
                    present=state.present,
                    charge_state=state.charge_state or "unknown",
                    charge_since=(tracker.state_since or 0.0) if tracker is not None else 0.0,
                    held=None if hold is None else hold.core_held,
                    held_by=None if hold is None else hold.holder,
                )
            )
        return states

    def _unlock_for_tap(self, slot: int | None, board: int, lock_index: int) -> None:
        try:
            self.lock_bus.unlock(board, lock_index)
        except Exception as exc:
            # The hold stays: if the door did open, the poller sees it; if not, it lapses.
            log.error(
                "unlock of slot %s (board %d lock %d) failed: %s", slot, board, lock_index, exc
            )

    def _observe_hold(
        self, cfg: SlotConfig, door_open: bool, present: bool | None, position: int
    ) -> tuple[bool, _Ending | None]:
        """Move ``cfg``'s hold on with what its door does: (changed, ending)."""
        hold = self._holds.get(cfg.slot)
        if hold is None:
            return False, None
        if door_open:
            if hold.opened:
                return False, None
            hold.opened = True
            return True, None
        if not hold.opened:
            return False, None
        del self._holds[cfg.slot]
        return True, (hold, position, worker_access.outcome_on_close(hold, present))

    def _expire_holds(self, at: str, events: list[dict[str, Any]]) -> list[_Ending]:
        """End the holds whose door never opened in time (``hold_ended`` for each)."""
        ended: list[_Ending] = []
        now = time.monotonic()
        for slot, hold in list(self._holds.items()):
            if not hold.expired(now, self._reservation_timeout):
                continue
            del self._holds[slot]
            ended.append((hold, None, Outcome.CANCELLED))
            if hold.purpose != REMOTE:
                events.append(
                    {
                        "type": str(MessageType.HOLD_ENDED),
                        "slot": slot,
                        "purpose": hold.purpose,
                        "checkout": hold.checkout,
                        "at": at,
                    }
                )
                log.info("slot %d: the %s hold lapsed, its door never opened", slot, hold.purpose)
        return ended

    def _journal_observations(
        self, events: list[dict[str, Any]], ended: list[_Ending], changed: bool
    ) -> list[int]:
        """Journal what the sensors showed, with the holds and notes it changed, in one commit."""
        with self.journal.lock:
            first = self.journal.next_seq
            notes = list(self._notes)
            wall = time.time()
            for hold, position, outcome in ended:
                if outcome == Outcome.COMPLETED and position is not None:
                    note = worker_access.note_for(hold, first + position, wall)
                    if note is not None:
                        notes.append(note)
            local: dict[str, Any] = {}
            if changed or ended:
                local["holds"] = self._holds_data()
            if len(notes) != len(self._notes):
                local["notes"] = [n.to_data() for n in notes]
            seqs = self.journal.append_many(events, local=local or None)
        if len(notes) != len(self._notes):
            self._notes = notes
            self._snapshot = worker_access.with_notes(self._base, notes)
        for hold, _, outcome in ended:
            if hold.purpose != REMOTE:
                self._publish(
                    {"type": f"{hold.purpose}_{outcome}", "slot": hold.slot, "asset": hold.asset}
                )
                log.info("slot %d: %s %s (%s)", hold.slot, hold.purpose, outcome, hold.asset)
        return seqs

    # -- remote opens ----------------------------------------------------------------------------

    def hold_for_remote(self, board: int, lock_index: int) -> Hold | None:
        """Hold the slot a remote open unlocks, so no tap is given that door meanwhile."""
        with self._state_lock:
            cfg = next(
                (c for c in self._slots if (c.board, c.lock_index) == (board, lock_index)), None
            )
            if cfg is None or cfg.slot in self._holds:
                return None
            hold = Hold(cfg.slot, REMOTE, started_at=time.time(), started=time.monotonic())
            self._holds[cfg.slot] = hold
            return hold

    def release(self, hold: Hold) -> None:
        """End ``hold`` at once (its unlock failed), if it is still there."""
        with self._state_lock:
            if self._holds.get(hold.slot) is hold:
                del self._holds[hold.slot]

    # -- sensors ---------------------------------------------------------------------------------

    def configure_and_snapshot(self, config: BankConfig) -> int | None:
        """Apply a slot configuration and journal a snapshot of the physical state."""
        with self._state_lock:
            slots = config.slots
            previous = {s.slot: s for s in self._slots}
            self.config = config
            self._slots = slots
            self._generation += 1
            self._reservation_timeout = config.reservation_timeout_seconds
            states: dict[int, _SlotState] = {}
            for cfg in slots:
                old = self._states.get(cfg.slot)
                keep = old is not None and previous.get(cfg.slot) == cfg
                states[cfg.slot] = old if keep and old is not None else _SlotState()
                if (
                    self.charge_meter is not None
                    and cfg.has_charger
                    and states[cfg.slot].tracker is None
                ):
                    states[cfg.slot].tracker = ChargeTracker(self.charge_thresholds)
            self._states = states
            changed = False
            for slot in [s for s in self._holds if s not in states]:
                del self._holds[slot]  # the slot is gone from the bank
                changed = True
            at = utc_now()
            readings = self._read_boards(sorted({s.board for s in slots}))
            entries = []
            ended: list[_Ending] = []
            for cfg in slots:
                status = readings.get(cfg.board)
                if status is None:
                    # No truth to report; the poller reports it once the board answers.
                    continue
                state = self._states[cfg.slot]
                state.door_open = not status.door_closed[cfg.lock_index]
                state.present = status.present[cfg.lock_index]
                # A held door that closed unseen (the worker was down) ends with the snapshot.
                moved, ending = self._observe_hold(cfg, state.door_open, state.present, 0)
                changed |= moved
                if ending is not None:
                    ended.append(ending)
                if state.tracker is not None:
                    state.charge_state = self._charge_state(cfg, state)
                entries.append(
                    {
                        "slot": cfg.slot,
                        "door_open": state.door_open,
                        "present": state.present,
                        "charge_state": state.charge_state,
                    }
                )
            snapshot = {"type": str(MessageType.SNAPSHOT), "at": iso(at), "slots": entries}
            (seq,) = self._journal_observations([snapshot], ended, changed)
        self._wake()
        log.info("snapshot of %d slot(s) journaled as seq %d", len(entries), seq)
        return seq

    def _read_boards(self, boards: Iterable[int]) -> dict[int, BoardStatus]:
        readings: dict[int, BoardStatus] = {}
        for board in boards:
            try:
                readings[board] = self.lock_bus.status(board)
            except LockBoardError as exc:
                if self._board_ok.get(board, True):
                    log.error("lock board %d does not answer: %s", board, exc)
                self._board_ok[board] = False
                continue
            if not self._board_ok.get(board, True):
                log.info("lock board %d answers again", board)
            self._board_ok[board] = True
        return readings

    def poll_once(self) -> list[int]:
        """Read every configured board once, journal what changed and end the holds that are
        over; returns the new seqs."""
        with self._state_lock:
            slots, generation = self._slots, self._generation
        if not slots:
            return []
        at = iso(utc_now())
        # Read without the lock, so a tap never waits for the bus (a board timing out, say).
        readings = self._read_boards(sorted({s.board for s in slots}))
        with self._state_lock:
            if generation != self._generation:
                return []  # a snapshot was taken meanwhile: it is newer than these readings
            events: list[dict[str, Any]] = []
            ended: list[_Ending] = []
            changed = False
            for cfg in slots:
                status = readings.get(cfg.board)
                if status is not None:
                    changed |= self._slot_changes(cfg, status, at, events, ended)
            ended.extend(self._expire_holds(at, events))
            if not events and not changed and not ended:
                return []
            seqs = self._journal_observations(events, ended, changed)
        if seqs:
            self._wake()
            for event, seq in zip(events, seqs, strict=True):
                log.debug("seq %d: %s", seq, event)
        return seqs

    def _slot_changes(
        self,
        cfg: SlotConfig,
        status: BoardStatus,
        at: str,
        events: list[dict[str, Any]],
        ended: list[_Ending],
    ) -> bool:
        """Append ``cfg``'s changes to ``events``; True if its hold changed."""
        state = self._states[cfg.slot]
        door_open = not status.door_closed[cfg.lock_index]
        present = status.present[cfg.lock_index]
        door_event = {"type": str(MessageType.DOOR), "slot": cfg.slot, "open": door_open, "at": at}
        door_changed = door_open != state.door_open
        changed = False
        # Same order as things happen: the door opens, the item leaves or arrives, the door
        # closes. The server applies them in seq order.
        if door_changed and door_open:
            events.append(door_event)
            changed, _ = self._observe_hold(cfg, True, present, len(events) - 1)
        if present != state.present:
            state.present = present
            events.append(
                {
                    "type": str(MessageType.PRESENCE),
                    "slot": cfg.slot,
                    "present": present,
                    "at": at,
                }
            )
            events.extend(self._charge_changes(cfg, state, at))
        if door_changed and not door_open:
            events.append(door_event)
            closed, ending = self._observe_hold(cfg, False, present, len(events) - 1)
            changed |= closed
            if ending is not None:
                ended.append(ending)
        state.door_open = door_open
        return changed

    def _charge_state(self, cfg: SlotConfig, state: _SlotState) -> str:
        # Called with the state lock held, so the tracker's clock never runs backwards.
        assert state.tracker is not None
        state.current_ma = self._currents.get(cfg.slot)
        return state.tracker.update(state.present, state.current_ma, time.monotonic()).value

    def _charge_changes(self, cfg: SlotConfig, state: _SlotState, at: str) -> list[dict[str, Any]]:
        if state.tracker is None:
            return []
        new = self._charge_state(cfg, state)
        if new == state.charge_state:
            return []
        state.charge_state = new
        return [
            {
                "type": str(MessageType.CHARGE),
                "slot": cfg.slot,
                "state": new,
                "current_ma": state.current_ma,
                "at": at,
            }
        ]

    def read_charge_once(self) -> list[int]:
        """Read the charge meter once and journal charge state changes; returns the new seqs."""
        meter = self.charge_meter
        if meter is None:
            return []
        try:
            currents = dict(meter.read())
        except Exception as exc:
            log.warning("charge meter read failed: %s", exc)
            currents = {}
        with self._state_lock:
            self._currents = {k: (int(v) if v is not None else None) for k, v in currents.items()}
            at = iso(utc_now())
            events: list[dict[str, Any]] = []
            for cfg in self._slots:
                state = self._states.get(cfg.slot)
                if state is not None and state.tracker is not None and state.present is not None:
                    events.extend(self._charge_changes(cfg, state, at))
            seqs = self.journal.append_many(events)
        if seqs:
            self._wake()
        return seqs
