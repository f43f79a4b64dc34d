"""Commands from the server (remote opens), each executed at most once.

Every command carries a server-made id and an expiry. The journal keeps every id executed with
its result: a command delivered again is reported again with its original result, never run
twice; an expired one is never run; one that was interrupted mid-unlock (the worker died) is
reported failed rather than risking a second opening. No Django here.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from devices.drivers.base import LOCKS_PER_BOARD, LockBoardError, LockBus
from devices.wire import CommandStatus, MessageType
from devices.worker_access import Hold
from devices.worker_config import BadMessage, int_field, parse_expiry
from devices.worker_journal import CommandRecord, Journal, iso, utc_now

log = logging.getLogger("devices.worker")


class CommandRunner:
    """Runs one bank's commands on one thread, one after the other.

    One thread also makes the journal's executed-id check race-free when a command is
    delivered twice in a row. ``hold(board, lock_index)`` holds the slot an unlock opens
    (returns the hold, or None) and ``release(hold)`` gives it up when the unlock failed;
    ``wake`` tells the sender a result was journaled.
    """

    def __init__(
        self,
        bank: str,
        journal: Journal,
        lock_bus: LockBus,
        hold: Callable[[int, int], Hold | None],
        release: Callable[[Hold], None],
        wake: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.lock_bus = lock_bus
        self._hold = hold
        self._release = release
        self._wake = wake
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"worker-commands-{bank}"
        )

    def submit(self, message: dict[str, Any], received_at: datetime) -> None:
        """Queue ``message`` (a ``command``) received at ``received_at``; returns at once."""
        self._executor.submit(self._run, message, received_at)

    def shutdown(self) -> None:
        """Finish the command running, drop the queued ones (the server sends them again)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, message: dict[str, Any], received_at: datetime) -> None:
        """Execute one ``command`` at most once (on the command thread)."""
        command_id = message.get("id")
        if not isinstance(command_id, str) or not command_id:
            log.warning("ignoring a command without an id: %.200r", message)
            return
        try:
            self._execute(command_id, message, received_at)
        except Exception:
            # The journal write itself failed (disk full?): nothing more can be promised.
            log.exception("command %s could not be handled", command_id)
        self._wake()

    def _execute(self, command_id: str, message: dict[str, Any], received_at: datetime) -> None:
        known = self.journal.command(command_id)
        if known is not None:
            self._report_again(known)
            return
        try:
            expires_at = parse_expiry(message.get("expires_at"))
            if message.get("action") != "unlock":
                raise BadMessage(f"unknown action {message.get('action')!r}")
            board = int_field(message, "board", high=LOCKS_PER_BOARD - 1)
            lock_index = int_field(message, "lock_index", high=LOCKS_PER_BOARD - 1)
        except BadMessage as exc:
            log.warning("command %s is malformed: %s", command_id, exc)
            self.journal.finish_command(command_id, CommandStatus.FAILED, f"bad command: {exc}")
            return
        slot = message.get("slot")
        # Checked against the receive time and again now: a command that waited behind
        # another one must not run late either.
        if received_at >= expires_at or utc_now() >= expires_at:
            detail = f"received at {iso(received_at)}, expired at {iso(expires_at)}"
            log.warning("command %s (unlock slot %s) expired: %s", command_id, slot, detail)
            self.journal.finish_command(
                command_id, CommandStatus.EXPIRED, detail, expires_at=expires_at
            )
            return
        known = self.journal.claim_command(command_id, expires_at)
        if known is not None:
            self._report_again(known)
            return
        held = self._hold(board, lock_index)
        try:
            status = self.lock_bus.unlock(board, lock_index)
        except Exception as exc:
            if isinstance(exc, LockBoardError):
                log.error("command %s: unlock of slot %s failed: %s", command_id, slot, exc)
                detail = str(exc)
            else:
                log.exception("command %s: unlock of slot %s failed", command_id, slot)
                detail = f"{type(exc).__name__}: {exc}"
            result = CommandStatus.FAILED
            if held is not None:
                self._release(held)
        else:
            result = CommandStatus.DONE
            detail = f"unlocked board {board} lock {lock_index}"
            if status.door_closed[lock_index]:
                detail += "; the board still reports the door closed"
            log.info(
                "command %s: unlocked slot %s (board %d lock %d)",
                command_id,
                slot,
                board,
                lock_index,
            )
        self.journal.finish_command(command_id, result, detail, expires_at=expires_at)

    def _report_again(self, known: CommandRecord) -> None:
        if known.status == "started":
            # Claimed by an earlier run that never recorded a result: it stopped mid-unlock.
            # Whether the door opened is unknown, and unlocking again could open it twice.
            log.warning("command %s was interrupted earlier; not executing it again", known.id)
            self.journal.finish_command(
                known.id, CommandStatus.FAILED, "interrupted: the worker stopped while executing it"
            )
            return
        log.info("command %s already handled (%s); reporting it again", known.id, known.status)
        self.journal.append(
            {
                "type": str(MessageType.COMMAND_RESULT),
                "id": known.id,
                "status": known.status,
                "detail": known.detail,
            }
        )
