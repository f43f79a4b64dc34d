"""Run an emulated bank (boards, meter, badge reader) with the real worker, or drive a running one."""

from __future__ import annotations

import os
import signal
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices.actions import rotate_token
from devices.emulators.bank import (
    CHARGING_MA,
    HELP,
    TRICKLE_MA,
    EmulatedBank,
    SlotSpec,
    send_control,
)
from devices.models import LockerBank, Slot
from lockerhub.audit import SYSTEM
from lockerhub.signing import public_key_text


def slot_specs(bank: LockerBank) -> list[SlotSpec]:
    """The emulated hardware starts as the server last saw it."""
    currents = {Slot.ChargeState.CHARGED: TRICKLE_MA, Slot.ChargeState.CHARGING: CHARGING_MA}
    return [
        SlotSpec(
            number=slot.number,
            board=slot.board,
            lock_index=slot.lock_index,
            present=bool(slot.present),
            current_ma=currents.get(slot.charge_state, CHARGING_MA if slot.present else 0),
        )
        for slot in bank.slots.order_by("number")
    ]


class Command(BaseCommand):
    help = (
        "Emulate a bank's hardware and run the real bank worker against it, with a prompt to tap badges, "
        "open and close doors, take and put devices, and unplug chargers. With an ACTION, send that one "
        "command to the bank's running emulator instead.\n\n" + HELP
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="Bank code, e.g. BANK-A")
        parser.add_argument(
            "action",
            nargs="*",
            help="e.g. 'tap 04D3E0000003E9' or 'take 3' (to a running emulator)",
        )
        parser.add_argument("--server", default="ws://127.0.0.1:8000", help="LockerHub server URL")
        parser.add_argument("--headless", action="store_true", help="No prompt; run until stopped")
        parser.add_argument(
            "--manual",
            action="store_true",
            help="Nobody stands at the bank: doors stay as you leave them",
        )
        parser.add_argument(
            "--kiosk-port",
            type=int,
            default=0,
            help="Serve the worker's local kiosk feed on 127.0.0.1:PORT (default: none)",
        )
        parser.add_argument(
            "--rotate-token",
            action="store_true",
            help="Give the bank a new device token for this emulator (the old one stops working)",
        )

    def handle(self, *args, **options):
        code, data_dir = options["code"], settings.DATA_DIR
        if options["action"]:
            try:
                self.stdout.write(send_control(data_dir, code, " ".join(options["action"])))
            except ConnectionError as exc:
                raise CommandError(str(exc)) from None
            return
        try:
            bank = LockerBank.objects.get(code=code)
        except LockerBank.DoesNotExist:
            raise CommandError(f"No bank {code!r}.") from None
        token = os.environ.get("LOCKERHUB_BANK_TOKEN")
        if options["rotate_token"]:
            token = rotate_token(bank, actor=SYSTEM)
        if not token:
            raise CommandError(
                "Set LOCKERHUB_BANK_TOKEN to the bank's device token, or pass --rotate-token."
            )

        emulated = EmulatedBank(
            code,
            slot_specs(bank),
            server=options["server"],
            token=token,
            data_dir=data_dir,
            auto_person=not options["manual"],
            invert_hook=bank.invert_hook,
            server_key=public_key_text(),
            kiosk_port=options["kiosk_port"],
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with emulated:
            self.stdout.write(
                f"Emulated {code}: lock bus {emulated.board.port}, charge meter {emulated.meter.port}, "
                f"badge reader udp:127.0.0.1:{emulated.nfc_port}"
            )
            if options["headless"] or not sys.stdin.isatty():
                self._wait(emulated, stop)
            else:
                self._prompt(emulated, stop)

    def _wait(self, emulated: EmulatedBank, stop: threading.Event) -> None:
        try:
            while not stop.wait(0.5):
                if emulated.worker.poll() is not None:
                    raise CommandError(
                        f"the bank worker exited with status {emulated.worker.returncode}"
                    )
        except KeyboardInterrupt:
            pass

    def _prompt(self, emulated: EmulatedBank, stop: threading.Event) -> None:
        self.stdout.write("Type 'help' for commands.")
        while not stop.is_set():
            try:
                line = input(f"{emulated.code}> ")
            except (EOFError, KeyboardInterrupt):
                break
            if line.strip() in {"quit", "exit"}:
                break
            answer = emulated.command(line)
            if answer:
                self.stdout.write(answer)
