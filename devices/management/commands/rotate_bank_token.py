"""Replace a bank's device token and print the new one once."""

from django.core.management.base import BaseCommand, CommandError

from devices.actions import rotate_token
from devices.models import LockerBank
from lockerhub.audit import SYSTEM


class Command(BaseCommand):
    help = "Give a bank a new device token (the old one stops working) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("code")

    def handle(self, *args, **options):
        try:
            bank = LockerBank.objects.get(code=options["code"])
        except LockerBank.DoesNotExist:
            raise CommandError(f"No bank {options['code']!r}.") from None
        self.stdout.write(rotate_token(bank, actor=SYSTEM))
