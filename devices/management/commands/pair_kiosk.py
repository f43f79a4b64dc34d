"""Issue a one-time pairing link for a kiosk screen beside a bank."""

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from devices.actions import PAIRING_VALID_FOR, pair_kiosk
from devices.models import LockerBank
from lockerhub.audit import SYSTEM


class Command(BaseCommand):
    help = (
        "Pair a kiosk screen with a bank: prints a one-time link to open on that screen "
        "(valid for 24 hours). Pairing an existing name again gives it a new link."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="Bank code, e.g. BANK-A")
        parser.add_argument("--name", default="Kiosk", help="Name of the screen, e.g. 'Gate 3'")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the kiosk reaches the server (default: %(default)s)",
        )

    def handle(self, *args, **options):
        bank = LockerBank.objects.filter(code=options["code"]).first()
        if bank is None:
            raise CommandError(f"No bank {options['code']!r}.")
        try:
            pairing = pair_kiosk(bank, options["name"], actor=SYSTEM)
        except ValueError as error:
            raise CommandError(str(error)) from None
        path = reverse("devices:kiosk-pair", args=[pairing.code])
        hours = int(PAIRING_VALID_FOR.total_seconds() // 3600)
        self.stdout.write(
            f"Kiosk {pairing.kiosk.name!r} at {bank.code}: open this link once on its screen "
            f"(valid {hours} h):"
        )
        self.stdout.write(options["base_url"].rstrip("/") + path)
