"""Create a locker bank with its slots and print its device token once."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices.actions import create_bank
from devices.models import LockerBank, Site
from lockerhub.audit import SYSTEM
from lockerhub.signing import public_key_text


class Command(BaseCommand):
    help = "Create a locker bank (and its slots) at a site, and print its device token. The token is shown only once."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Bank code, e.g. BANK-C")
        parser.add_argument("--site", required=True, help="Site name")
        parser.add_argument(
            "--slots", type=int, default=12, help="Number of doors (16 per lock board)"
        )
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--protocol",
            default=LockerBank.Protocol.KERONG_CU16,
            choices=LockerBank.Protocol.values,
        )
        parser.add_argument("--no-chargers", action="store_true", help="The slots have no chargers")

    def handle(self, *args, **options):
        if not 1 <= options["slots"] <= 256:
            raise CommandError("--slots must be between 1 and 256 (16 boards of 16 locks).")
        try:
            site = Site.objects.get(name=options["site"])
        except Site.DoesNotExist:
            raise CommandError(f"No site named {options['site']!r}.") from None
        if LockerBank.objects.filter(code=options["code"]).exists():
            raise CommandError(
                f"A bank {options['code']!r} exists already; use rotate_bank_token for a new token."
            )
        try:
            bank, token = create_bank(
                site,
                options["code"],
                slots=options["slots"],
                actor=SYSTEM,
                name=options["name"],
                protocol=options["protocol"],
                chargers=not options["no_chargers"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Created {bank.code} at {site.name} with {options['slots']} slots.")
        self.stdout.write(
            "Device token (shown once; give it to the bank worker as LOCKERHUB_BANK_TOKEN):"
        )
        self.stdout.write(token)
        self.stdout.write(
            "Server public key (the worker checks its access snapshots with it; "
            "give it as LOCKERHUB_SERVER_KEY):"
        )
        self.stdout.write(public_key_text())
