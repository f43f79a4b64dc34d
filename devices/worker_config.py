"""A bank worker's configuration: its command line, the server's ``config`` message, the
fields of a command, its URL.

No Django: part of the bank worker (``devices.worker``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from access import core
from devices.drivers.base import LOCKS_PER_BOARD

log = logging.getLogger("devices.worker")

DEFAULT_RESERVATION_TIMEOUT_SECONDS = 30.0
TOKEN_ENV = "LOCKERHUB_BANK_TOKEN"  # noqa: S105 - the name of the variable, not a token
SERVER_KEY_ENV = "LOCKERHUB_SERVER_KEY"
DEFAULT_KIOSK_PORT = 8765
MIN_POLL_HZ = 5.0


class BadMessage(ValueError):
    """A message from the server that does not follow the protocol."""


@dataclass(frozen=True)
class SlotConfig:
    """One slot as the server configured it."""

    slot: int
    board: int
    lock_index: int
    has_charger: bool


@dataclass(frozen=True)
class BankConfig:
    """A ``config`` message, read."""

    slots: tuple[SlotConfig, ...]
    heartbeat_seconds: float | None
    last_acked_seq: int
    reservation_timeout_seconds: float = DEFAULT_RESERVATION_TIMEOUT_SECONDS
    invert_hook: bool | None = None


def int_field(
    message: Mapping[str, Any], name: str, *, low: int = 0, high: int | None = None
) -> int:
    """``message[name]`` as an integer within [low, high]; :class:`BadMessage` otherwise."""
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise BadMessage(f"{name} out of range: {value!r}")
    return value


def _positive(message: Mapping[str, Any], name: str) -> float | None:
    value = message.get(name)
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise BadMessage(f"{name} must be a positive number, got {value!r}")
    return None if value is None else float(value)


def parse_config(message: Mapping[str, Any]) -> BankConfig:
    """A ``config`` message, read; raises :class:`BadMessage`."""
    raw_slots = message.get("slots")
    if not isinstance(raw_slots, list):
        raise BadMessage("config.slots must be a list")
    slots: list[SlotConfig] = []
    for raw in raw_slots:
        if not isinstance(raw, dict):
            raise BadMessage(f"config slot must be an object, got {raw!r}")
        has_charger = raw.get("has_charger", False)
        if not isinstance(has_charger, bool):
            raise BadMessage(f"has_charger must be a boolean, got {has_charger!r}")
        slots.append(
            SlotConfig(
                slot=int_field(raw, "slot", low=1),
                board=int_field(raw, "board", high=LOCKS_PER_BOARD - 1),
                lock_index=int_field(raw, "lock_index", high=LOCKS_PER_BOARD - 1),
                has_charger=has_charger,
            )
        )
    if len({s.slot for s in slots}) != len(slots):
        raise BadMessage("config has a slot number twice")
    if len({(s.board, s.lock_index) for s in slots}) != len(slots):
        raise BadMessage("config has a lock address twice")
    heartbeat = _positive(message, "heartbeat_seconds")
    timeout = _positive(message, "reservation_timeout_seconds")
    last_acked = message.get("last_acked_seq", 0)
    if last_acked is None:
        last_acked = 0
    if not isinstance(last_acked, int) or isinstance(last_acked, bool) or last_acked < 0:
        raise BadMessage(f"last_acked_seq must be a non-negative integer, got {last_acked!r}")
    invert_hook = message.get("invert_hook")
    return BankConfig(
        slots=tuple(sorted(slots, key=lambda s: s.slot)),
        heartbeat_seconds=heartbeat,
        last_acked_seq=last_acked,
        reservation_timeout_seconds=(
            DEFAULT_RESERVATION_TIMEOUT_SECONDS if timeout is None else timeout
        ),
        invert_hook=invert_hook if isinstance(invert_hook, bool) else None,
    )


def parse_expiry(value: Any) -> datetime:
    """``expires_at`` of a command as an aware datetime; a naive time is taken as UTC."""
    if not isinstance(value, str):
        raise BadMessage(f"expires_at must be an ISO 8601 string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadMessage(f"expires_at is not ISO 8601: {value!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def server_url(server: str, bank: str) -> str:
    """The bank's WebSocket URL under ``server`` (``http(s)://`` is mapped to ``ws(s)://``)."""
    parts = urllib.parse.urlsplit(server.strip())
    scheme = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"--server must be a ws://, wss://, http:// or https:// URL, got {server!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        # Anything secret in the URL ends up in proxy logs; the token goes in a header.
        raise ValueError("--server must not carry credentials, a query or a fragment")
    if not bank or "/" in bank:
        raise ValueError(f"bad bank code {bank!r}")
    path = parts.path.rstrip("/") + f"/ws/devices/{urllib.parse.quote(bank, safe='')}/"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


# -- the command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devices.worker``."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.worker",
        description="Run a locker bank (lock boards, badge reader, charge meter) for LockerHub.",
    )
    parser.add_argument(
        "--server", required=True, help="base URL, e.g. wss://lockerhub.example.com"
    )
    parser.add_argument("--bank", required=True, help="bank code, e.g. BANK-A")
    parser.add_argument(
        "--token",
        help=f"device token; prefer the {TOKEN_ENV} environment variable (not shown in ps)",
    )
    parser.add_argument(
        "--server-key",
        help=f"the server's public key as create_bank prints it (or {SERVER_KEY_ENV})",
    )
    parser.add_argument(
        "--lock-port", required=True, help="serial port or pyserial URL of the lock bus"
    )
    parser.add_argument(
        "--protocol", default="kerong-cu16", help="lock-board protocol (default: kerong-cu16)"
    )
    parser.add_argument(
        "--nfc", required=True, metavar="DEVICE", help="nfcpy reader path, or 'none'"
    )
    parser.add_argument("--charge-port", help="serial port of the Modbus charge-current meter")
    parser.add_argument("--charge-registers", metavar="MAP", help="slot to meter register map")
    parser.add_argument(
        "--invert-hook", action="store_true", help="this hardware reports 1 for an open door"
    )
    parser.add_argument(
        "--journal", help="journal file (default: ./lockerhub-worker-<BANK>.sqlite3)"
    )
    parser.add_argument(
        "--kiosk-port",
        type=int,
        default=DEFAULT_KIOSK_PORT,
        help=f"local kiosk feed port on 127.0.0.1 (default {DEFAULT_KIOSK_PORT}; 0: none)",
    )
    parser.add_argument(
        "--poll-hz", type=float, default=10.0, help="lock bus polls per second (>= 5)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, str]:
    """(token, server key) from the command line and environment; exits on a bad line."""
    token = (os.environ.get(TOKEN_ENV) or "").strip()
    if args.token:
        log.warning("--token is visible to every user in ps; prefer %s", TOKEN_ENV)
        token = args.token.strip()
    if not token:
        parser.error(f"a device token is needed: set {TOKEN_ENV} (or pass --token)")
    server_key = (args.server_key or os.environ.get(SERVER_KEY_ENV) or "").strip()
    if not server_key:
        parser.error(f"the server's public key is needed: --server-key or {SERVER_KEY_ENV}")
    try:
        core.load_public_key(server_key)
    except ValueError as exc:
        parser.error(f"--server-key: {exc}")
    if args.poll_hz < MIN_POLL_HZ:
        parser.error(f"--poll-hz must be at least {MIN_POLL_HZ:g}")
    if not 0 <= args.kiosk_port <= 65535:
        parser.error("--kiosk-port must be 0-65535")
    try:
        server_url(args.server, args.bank)
    except ValueError as exc:
        parser.error(str(exc))
    if bool(args.charge_registers) != bool(args.charge_port):
        parser.error("--charge-port and --charge-registers go together")
    return token, server_key
