"""Walk the audit chain and report the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from lockerhub.audit import verify_chain
from lockerhub.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log. Exits non-zero at the first broken link."

    def add_arguments(self, parser):
        parser.add_argument(
            "--all", action="store_true", help="List every broken link, not just the first."
        )

    def handle(self, *args, **options):
        breaks = []
        for chain_break in verify_chain():
            breaks.append(chain_break)
            if not options["all"]:
                break
        if breaks:
            for chain_break in breaks:
                self.stderr.write(
                    f"audit chain broken at #{chain_break.seq}: {chain_break.problem}"
                )
            raise CommandError(
                f"the audit chain is broken (first bad row: #{breaks[0].seq})", returncode=1
            )
        self.stdout.write(
            self.style.SUCCESS(f"audit chain intact: {AuditEvent.objects.count()} events")
        )
