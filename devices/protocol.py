"""Parsing and validating messages from bank workers (docs/device-protocol.md).

Pure functions, no database: the consumer turns a ``ProtocolError`` into an error reply and
changes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from access.core import Purpose, Reason
from devices.wire import (
    CHARGE_STATES,
    COMMAND_STATUSES,
    SEQUENCED,
    UNSEQUENCED,
    MessageType,
    is_valid_uid,
)

MAX_MESSAGE_BYTES = 256 * 1024
# Sequence numbers and other integers stay within what every JSON reader holds exactly.
MAX_SEQ = 2**53 - 1
REASONS = frozenset(reason.value for reason in Reason)
# A worker whose clock is off by more than this gets the server's time instead.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class ProtocolError(ValueError):
    def __init__(self, code: str, detail: str, seq: int | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.seq = seq

    def reply(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "detail": self.detail, "seq": self.seq}


@dataclass(frozen=True)
class Message:
    type: str
    seq: int | None
    at: datetime
    body: dict[str, Any]


def parse(text: str | bytes | None, now: datetime | None = None) -> Message:
    """Parse one worker message or raise ``ProtocolError`` saying exactly what is wrong."""
    if text is None:
        raise ProtocolError("bad_message", "binary frames are not accepted; send JSON text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError("bad_message", f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_message", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "a message is a JSON object")
    kind = data.get("type")
    seq = (
        data.get("seq")
        if isinstance(data.get("seq"), int) and not isinstance(data.get("seq"), bool)
        else None
    )
    if kind not in SEQUENCED | UNSEQUENCED:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", seq)
    if kind in SEQUENCED and (seq is None or not 1 <= seq <= MAX_SEQ):
        raise ProtocolError("bad_field", f"seq must be an integer from 1 to {MAX_SEQ}", None)
    now = now or timezone.now()
    at = (
        _parse_at(data.get("at"), now, seq)
        if kind not in (MessageType.HELLO, MessageType.SNAPSHOT_REQUEST)
        else now
    )
    _VALIDATORS[kind](data, seq)
    return Message(kind, seq if kind in SEQUENCED else None, at, data)


def _parse_at(value: Any, now: datetime, seq: int | None) -> datetime:
    if value is None:
        return now
    if not isinstance(value, str):
        raise ProtocolError("bad_field", "at must be an ISO 8601 timestamp", seq)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(
            "bad_field", f"at is not an ISO 8601 timestamp: {value[:40]!r}", seq
        ) from None
    if at.tzinfo is None:
        raise ProtocolError("bad_field", "at needs a UTC offset", seq)
    # Replayed events may be old; but a clock running ahead must not move time forward.
    if at > now + MAX_CLOCK_SKEW:
        return now
    return at


def _need(data: dict, field: str, kind: type, seq: int | None, *, nullable: bool = False) -> Any:
    if field not in data:
        raise ProtocolError("bad_field", f"{field} is missing", seq)
    value = data[field]
    if value is None and nullable:
        return None
    # bool is a subclass of int in Python; JSON true is not a number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            "bad_field", f"{field} must be {kind.__name__}{' or null' if nullable else ''}", seq
        )
    return value


def _slot(data: dict, seq: int | None) -> int:
    slot = _need(data, "slot", int, seq)
    if not 1 <= slot <= 4096:
        raise ProtocolError("bad_field", "slot out of range", seq)
    return slot


def _hello(data: dict, seq: int | None) -> None:
    worker_id = _need(data, "worker_id", str, seq)
    try:
        uuid.UUID(worker_id)
    except ValueError:
        raise ProtocolError("bad_field", "worker_id must be a UUID", seq) from None
    last_seq = data.get("last_seq", 0)
    if not isinstance(last_seq, int) or isinstance(last_seq, bool) or not 0 <= last_seq <= MAX_SEQ:
        raise ProtocolError("bad_field", "last_seq must be a non-negative integer", seq)
    version = data.get("snapshot_version")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_SEQ
    ):
        raise ProtocolError("bad_field", "snapshot_version must be a non-negative integer", seq)


def _heartbeat(data: dict, seq: int | None) -> None:
    return None


def _nothing(data: dict, seq: int | None) -> None:
    return None


def _tap(data: dict, seq: int | None) -> None:
    uid = _need(data, "uid", str, seq)
    if not is_valid_uid(uid):
        raise ProtocolError("bad_field", "uid must be 4 to 10 bytes of upper-case hex", seq)
    granted = _need(data, "granted", bool, seq)
    if _need(data, "reason", str, seq) not in REASONS:
        raise ProtocolError("bad_field", f"reason must be one of {sorted(REASONS)}", seq)
    purpose = data.get("purpose")
    if purpose is not None and purpose not in {p.value for p in Purpose}:
        raise ProtocolError("bad_field", "purpose must be take, return or null", seq)
    if granted and (purpose is None or not isinstance(data.get("slot"), int)):
        raise ProtocolError("bad_field", "a granted tap names its purpose and slot", seq)
    if data.get("slot") is not None:
        _slot(data, seq)
    for name in ("checkout", "holder", "version"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_SEQ
        ):
            raise ProtocolError("bad_field", f"{name} must be an integer or null", seq)
    for name in ("due_at", "shift_end"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 2**37
        ):
            raise ProtocolError("bad_field", f"{name} must be epoch seconds or null", seq)
    for name in ("asset", "message"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 200):
            raise ProtocolError("bad_field", f"{name} must be a short text or null", seq)
    if "again" in data:
        _need(data, "again", bool, seq)


def _hold_ended(data: dict, seq: int | None) -> None:
    _slot(data, seq)


def _door(data: dict, seq: int | None) -> None:
    _slot(data, seq)
    _need(data, "open", bool, seq)


def _presence(data: dict, seq: int | None) -> None:
    _slot(data, seq)
    _need(data, "present", bool, seq)


def _charge(data: dict, seq: int | None) -> None:
    _slot(data, seq)
    if _need(data, "state", str, seq) not in CHARGE_STATES:
        raise ProtocolError("bad_field", f"state must be one of {sorted(CHARGE_STATES)}", seq)
    if "current_ma" in data:
        _need(data, "current_ma", int, seq, nullable=True)


def _snapshot(data: dict, seq: int | None) -> None:
    slots = _need(data, "slots", list, seq)
    for entry in slots:
        if not isinstance(entry, dict):
            raise ProtocolError("bad_field", "each snapshot slot is an object", seq)
        _slot(entry, seq)
        _need(entry, "door_open", bool, seq)
        _need(entry, "present", bool, seq, nullable=True)
        state = _need(entry, "charge_state", str, seq, nullable=True)
        if state is not None and state not in CHARGE_STATES:
            raise ProtocolError(
                "bad_field", f"charge_state must be one of {sorted(CHARGE_STATES)}", seq
            )


def _command_result(data: dict, seq: int | None) -> None:
    try:
        uuid.UUID(_need(data, "id", str, seq))
    except ValueError:
        raise ProtocolError("bad_field", "id must be a command UUID", seq) from None
    if _need(data, "status", str, seq) not in COMMAND_STATUSES:
        raise ProtocolError("bad_field", f"status must be one of {sorted(COMMAND_STATUSES)}", seq)


_VALIDATORS = {
    "hello": _hello,
    "heartbeat": _heartbeat,
    "snapshot_request": _nothing,
    "tap": _tap,
    "hold_ended": _hold_ended,
    "door": _door,
    "presence": _presence,
    "charge": _charge,
    "snapshot": _snapshot,
    "command_result": _command_result,
}
