"""The words the bank worker and the server share: one module, no Django, imported by both.

Message types, charge states, command statuses, close codes and how a badge UID is written.
``docs/device-protocol.md`` describes the messages themselves.
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = "2"


class MessageType(enum.StrEnum):
    """Every ``type`` a message on the device WebSocket may have."""

    # worker → server, unsequenced
    HELLO = "hello"
    HEARTBEAT = "heartbeat"
    # worker → server, sequenced (journaled, acknowledged, applied exactly once)
    SNAPSHOT = "snapshot"  # the physical state of every slot
    TAP = "tap"  # a badge tap and the bank's decision on it
    HOLD_ENDED = "hold_ended"  # a granted tap whose door never opened (lapsed)
    DOOR = "door"
    PRESENCE = "presence"
    CHARGE = "charge"
    COMMAND_RESULT = "command_result"
    # server → worker
    CONFIG = "config"
    ACK = "ack"
    COMMAND = "command"
    ACCESS_SNAPSHOT = "access_snapshot"  # the signed access snapshot, whole
    ACCESS_DELTA = "access_delta"  # a signed change to it
    ERROR = "error"
    # worker → server: "send me the whole access snapshot" (a delta did not fit)
    SNAPSHOT_REQUEST = "snapshot_request"


SEQUENCED = frozenset(
    {
        MessageType.SNAPSHOT,
        MessageType.TAP,
        MessageType.HOLD_ENDED,
        MessageType.DOOR,
        MessageType.PRESENCE,
        MessageType.CHARGE,
        MessageType.COMMAND_RESULT,
    }
)
UNSEQUENCED = frozenset({MessageType.HELLO, MessageType.HEARTBEAT, MessageType.SNAPSHOT_REQUEST})


class ChargeState(enum.StrEnum):
    """What a slot's charger sees."""

    EMPTY = "empty"
    PRESENT_NOT_CHARGING = "present_not_charging"
    CHARGING = "charging"
    CHARGED = "charged"
    FAULT = "fault"
    UNKNOWN = "unknown"


CHARGE_STATES = frozenset(state.value for state in ChargeState)


class CommandStatus(enum.StrEnum):
    """How a worker reports a command it was sent."""

    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


COMMAND_STATUSES = frozenset(status.value for status in CommandStatus)


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses on the device connection."""

    BAD_TOKEN = 4401  # missing or wrong device token, or no such bank: retrying will not help
    UNKNOWN_BANK = 4404


UID_MIN_BYTES = 4
UID_MAX_BYTES = 10
_HEX = frozenset("0123456789ABCDEF")
_SEPARATORS = str.maketrans("", "", ":- \t\r\n")


def normalize_uid(raw: str | bytes | bytearray) -> str:
    """A badge UID as readers and people write it → upper-case hex without separators.

    ``04:a1:b2:c3``, ``04 A1 B2 C3``, ``04-a1-b2-c3`` and ``b"\\x04\\xa1\\xb2\\xc3"`` all give
    ``04A1B2C3``. Nothing else is dropped: a stray character stays and makes the UID invalid
    (see :func:`is_valid_uid`), rather than silently naming another badge.
    """
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).hex().upper()
    return raw.translate(_SEPARATORS).upper()


def is_valid_uid(uid: str) -> bool:
    """Whether ``uid`` (normalised) is 4 to 10 bytes of upper-case hex."""
    return (
        UID_MIN_BYTES * 2 <= len(uid) <= UID_MAX_BYTES * 2
        and len(uid) % 2 == 0
        and set(uid) <= _HEX
    )


def check_uid(raw: str | bytes | bytearray) -> str:
    """The normalised UID, or ``ValueError`` saying why ``raw`` cannot be a badge."""
    uid = normalize_uid(raw)
    if not is_valid_uid(uid):
        raise ValueError(
            f"a badge UID must be {UID_MIN_BYTES} to {UID_MAX_BYTES} bytes of hex, got {raw!r}"
        )
    return uid
