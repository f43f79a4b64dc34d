"""An emulated NFC badge for nfcpy's simulated ``udp`` driver, run as a separate process.

::

    python -m devices.emulators.nfc_card --port PORT --uid 04A1B2C3D4E5F6 [--hold 0.3] [--count 1]

presents an NFC-A card with that UID (4 or 7 bytes) to a reader opened as
``udp:127.0.0.1:PORT``, e.g. :class:`devices.readers.nfc.BadgeReader`, so the real reader
code runs end to end. :func:`tap` and :func:`start_tap` do the same from Python.

How the two sides of nfcpy's udp driver pair up
-----------------------------------------------
Both sides name the same ``udp:HOST:PORT``, but only the **card** side binds that port: it
waits there for commands. The **reader** side never binds; every sense round opens a fresh
UDP socket (the kernel picks an ephemeral port), *sends* its commands to HOST:PORT and waits
up to 1 s for the answers, which the card sends back to whatever address the command came
from. One datagram is one frame, ``b"<bitrate+type> <hex>"``, e.g. ``b"106A 26"`` for
SENS_REQ; after a round in which a card answered, the reader sends ``b"RFOFF"`` (field off)
before closing that socket. So either side may start first: while no card is bound,
commands vanish (an unconnected UDP socket gets no ICMP errors) and the reader sees an
empty field once its 1 s wait runs out.

The stock card side binds ``0.0.0.0``, i.e. every interface, which would let anyone on the
network present badges to a development kiosk. This emulator subclasses the driver's
``Device`` and overrides ``_bind_socket`` to bind 127.0.0.1 only. (The reader's sockets are
bound by the kernel on first send, to the wildcard address and an ephemeral port; nfcpy
offers no hook for that side.)

What is emulated
----------------
The udp driver itself answers NFC-A anticollision (SENS_REQ, SDD_REQ and SEL_REQ, cascade
levels included) for a listening target, which is all a badge reader needs for the UID.
nfcpy has no Type 2 tag emulation (``nfc.tag.emulate`` knows only Type 3), so the emulator
answers a Type 2 READ (``30 nn``) itself from a small blank MIFARE Ultralight style memory
(nfcpy identifies it as one). That lets a reader which activates the tag and reads
``tag.identifier``, then waits out nfcpy's presence check, work too. Other Type 2 commands
go unanswered, as a real tag that does not know them would.

Timing: the card counts as held for ``hold`` seconds from the moment a reader first
energises it (the first frame it answers), and waits up to ``wait`` seconds for that. A
reader sensing an empty field on the udp driver spends a full 1 s timeout per round, so
starting the clock at process start would lose short taps between rounds.
"""

from __future__ import annotations

import argparse
import errno
import functools
import operator
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nfc.clf
import nfc.clf.udp

LOOPBACK = "127.0.0.1"

# Exit codes of the command line.
EXIT_OK = 0
EXIT_NOT_SENSED = 1  # argparse uses 2 for usage errors
EXIT_PORT_UNUSABLE = 3

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class CardEmulatorError(RuntimeError):
    """The emulated card could not be presented (port busy, no reader, bad UID...)."""


def parse_uid(text: str) -> bytes:
    """A UID from hex (``04A1B2C3D4E5F6``; ``:``, ``-`` and spaces allowed): 4 or 7 bytes.

    10-byte (triple size) UIDs are refused: at the third cascade level nfcpy 1.0.4's udp
    driver waits for SEL_REQ code 95 instead of 97, so no reader could read one back.
    """
    cleaned = "".join(ch for ch in text if ch not in ":- ")
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"UID {text!r} is not hexadecimal") from None
    if len(uid) not in (4, 7):
        raise ValueError(f"UID {text!r} has {len(uid)} bytes; NFC-A badges have 4 or 7")
    if uid[0] == 0x88:
        raise ValueError(f"UID {text!r} starts with 88, the cascade tag, which no UID may")
    return uid


def _type2_memory(uid: bytes) -> bytes:
    """16 pages of a blank NFC Forum Type 2 tag whose header holds ``uid``."""
    if len(uid) == 7:
        bcc0 = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
        bcc1 = functools.reduce(operator.xor, uid[3:7])
        header = uid[0:3] + bytes([bcc0]) + uid[3:7] + bytes([bcc1, 0x48, 0x00, 0x00])
    else:
        header = uid + bytes([functools.reduce(operator.xor, uid)]) + bytes(7)
    # Capability container: NDEF 1.0, 48 data bytes, read/write; then an empty NDEF TLV.
    return header + bytes.fromhex("E1100600") + bytes.fromhex("0300FE") + bytes(64 - 19)


class _LoopbackCard(nfc.clf.udp.Device):
    """nfcpy's udp device on the card side: bound to loopback only, with a presence clock.

    The clock is enforced in ``_recv_data``, the single place where the driver waits, so the
    card leaves the field on time whatever the driver is doing; ``_send_data`` marks the
    first contact with a reader.
    """

    def __init__(self, port: int, *, hold: float, wait: float) -> None:
        try:
            super().__init__(LOOPBACK, port)
        except ValueError as exc:
            # The driver runs the port through getnameinfo() without NI_NUMERICSERV, so a
            # port with an /etc/services name comes back as that name and int() fails.
            raise CardEmulatorError(
                f"nfcpy's udp driver cannot use port {port}: it has a service name ({exc})"
            ) from exc
        self._hold = hold
        self._deadline = time.monotonic() + wait
        self.contact_at: float | None = None

    def _bind_socket(self, time_to_return: float) -> bool:
        # The stock method binds ("0.0.0.0", port). listen_tta() calls this on every listen;
        # the socket is kept across listens, so it may be bound already.
        if self.socket.getsockname()[1] == self.addr[1]:
            return True
        try:
            self.socket.bind(self.addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CardEmulatorError(
                    f"udp {LOOPBACK}:{self.addr[1]} is in use (is another card still presented?)"
                ) from exc
            raise
        return True

    def _send_data(self, brty: str, data: Any, addr: Any) -> None:
        if self.contact_at is None:
            self.contact_at = time.monotonic()
            self._deadline = self.contact_at + self._hold
        super()._send_data(brty, data, addr)

    def _recv_data(self, timeout: float | None, *brty_list: str) -> Any:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise nfc.clf.TimeoutError("card left the field")
        timeout = remaining if timeout is None else min(timeout, remaining)
        return super()._recv_data(timeout, *brty_list)


def present_card(port: int, uid: str | bytes, *, hold: float = 0.3, wait: float = 5.0) -> bool:
    """Present the card once, in this process; True if a reader sensed it.

    Blocks for up to ``wait`` seconds until a reader on ``udp:127.0.0.1:port`` first talks
    to the card, then ``hold`` seconds more while the card stays in the field.
    """
    uid_bytes = parse_uid(uid) if isinstance(uid, str) else parse_uid(uid.hex())
    # The hold clock starts at the first answer, so it must outlast the anticollision
    # exchange that follows (milliseconds).
    if not hold > 0:
        raise ValueError(f"hold must be > 0, got {hold}")
    if not wait >= 0:
        raise ValueError(f"wait must be >= 0, got {wait}")
    card = _LoopbackCard(port, hold=hold, wait=wait)
    target = nfc.clf.LocalTarget(
        "106A",
        # SENS_RES announces the UID size (single or double) and bit-frame anticollision;
        # SEL_RES 00 says Type 2 tag, no ISO-DEP, no NFC-DEP.
        sens_res=bytearray.fromhex("0400" if len(uid_bytes) == 4 else "4400"),
        sdd_res=bytearray(uid_bytes),
        sel_res=bytearray.fromhex("00"),
    )
    memory = _type2_memory(uid_bytes)
    try:
        # The clock in _LoopbackCard ends each listen; this timeout is only a backstop.
        backstop = wait + hold + 1.0
        while (activated := card.listen_tta(target, backstop)) is not None:
            _serve_type2(card, activated, memory)
    finally:
        card.close()
    return card.contact_at is not None


def _serve_type2(card: _LoopbackCard, activated: nfc.clf.LocalTarget, memory: bytes) -> None:
    """Answer Type 2 commands until the reader drops the field or the card leaves it."""
    command = activated.tt2_cmd
    while True:
        response = None
        if len(command) == 2 and command[0] == 0x30:
            # READ returns 4 pages, wrapping around the end of memory as real tags do.
            start = (command[1] * 4) % len(memory)
            response = bytearray((memory + memory)[start : start + 16])
        try:
            command = card.send_rsp_recv_cmd(activated, response, None)
        except nfc.clf.CommunicationError:
            # RFOFF: the reader starts a new round, which listen_tta answers on the same
            # socket; a timeout means the card has left the field.
            return


# -- command line ------------------------------------------------------------------------------


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1-65535, got {text}")
    return value


def _uid_arg(text: str) -> str:
    try:
        return parse_uid(text).hex().upper()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devices.emulators.nfc_card``."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.emulators.nfc_card",
        description="Present an emulated NFC badge to a reader on nfcpy's udp:127.0.0.1:PORT.",
    )
    parser.add_argument("--port", type=_port, required=True, help="UDP port the reader uses")
    parser.add_argument("--uid", type=_uid_arg, required=True, help="UID in hex, 4 or 7 bytes")
    parser.add_argument(
        "--hold", type=_positive_float, default=0.3, help="seconds in the field (default 0.3)"
    )
    parser.add_argument("--count", type=int, default=1, help="number of taps (default 1)")
    parser.add_argument(
        "--gap",
        type=_non_negative_float,
        default=2.0,
        help="seconds away from the reader between taps (default 2.0)",
    )
    parser.add_argument(
        "--wait",
        type=_non_negative_float,
        default=5.0,
        help="seconds to wait for a reader to sense each tap (default 5.0)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    for n in range(1, args.count + 1):
        if n > 1:
            time.sleep(args.gap)
        try:
            sensed = present_card(args.port, args.uid, hold=args.hold, wait=args.wait)
        except CardEmulatorError as exc:
            print(f"nfc_card: {exc}", file=sys.stderr)
            return EXIT_PORT_UNUSABLE
        if not sensed:
            print(
                f"nfc_card: no reader sensed card {args.uid} on udp:{LOOPBACK}:{args.port} "
                f"within {args.wait} s (tap {n} of {args.count})",
                file=sys.stderr,
            )
            return EXIT_NOT_SENSED
        print(
            f"card {args.uid} tapped on udp:{LOOPBACK}:{args.port} ({n}/{args.count})", flush=True
        )
    return EXIT_OK


# -- from Python --------------------------------------------------------------------------------


def start_tap(
    port: int,
    uid: str,
    hold: float = 0.3,
    *,
    count: int = 1,
    gap: float = 2.0,
    wait: float = 5.0,
) -> subprocess.Popen[str]:
    """Start the card emulator process and return at once.

    stdout and stderr are pipes: ``communicate()`` with the process (or kill it) when done.
    Exit codes: 0 every tap was sensed, 1 a tap was not sensed within ``wait``, 2 usage,
    3 the port cannot be used.
    """
    uid = parse_uid(uid).hex().upper()
    command = [
        sys.executable,
        "-m",
        "devices.emulators.nfc_card",
        f"--port={port}",
        f"--uid={uid}",
        f"--hold={hold}",
        f"--count={count}",
        f"--gap={gap}",
        f"--wait={wait}",
    ]
    # The child must import this package whatever the caller's working directory is.
    pythonpath = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )


def tap(
    port: int,
    uid: str,
    hold: float = 0.3,
    *,
    count: int = 1,
    gap: float = 2.0,
    wait: float = 5.0,
    timeout: float | None = None,
) -> None:
    """Tap the card ``count`` times in a separate process and wait for it to finish.

    Raises :class:`CardEmulatorError` if no reader sensed a tap within ``wait``, the port
    was busy, or the process outlived ``timeout`` (default: long enough for every tap).
    """
    if timeout is None:
        timeout = 10.0 + count * (wait + hold) + (count - 1) * gap
    process = start_tap(port, uid, hold, count=count, gap=gap, wait=wait)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise CardEmulatorError(f"card emulator did not finish within {timeout} s") from None
    if process.returncode != EXIT_OK:
        raise CardEmulatorError(
            f"card emulator exited with {process.returncode}: {stderr.strip() or 'no message'}"
        )


if __name__ == "__main__":
    sys.exit(main())
