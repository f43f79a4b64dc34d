"""Load the demo world (idempotent)."""

from django.core.management.base import BaseCommand

from lockerhub.demo import DEMO_PASSWORD, load_demo


class Command(BaseCommand):
    help = "Create the demo site, banks, devices, people and staff logins, unless they exist."

    def handle(self, *args, **options):
        result = load_demo()
        if not result.created:
            self.stdout.write("Demo data is already loaded.")
            return
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(
            f"Staff logins (password {DEMO_PASSWORD!r}): supervisor, hr, facilities, admin"
        )
