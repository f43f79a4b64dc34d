"""Import employees, badges or shift assignments from a CSV file: all rows or none."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.imports import Kind, columns, import_csv
from lockerhub.audit import SYSTEM


class Command(BaseCommand):
    help = (
        "Import a CSV file of employees, badges or shift assignments. Every bad row is "
        "reported and then nothing is imported; --dry-run checks a file without saving."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=[k.value for k in Kind])
        parser.add_argument("path", help="CSV file (UTF-8, with a header row); - for stdin")
        parser.add_argument("--dry-run", action="store_true", help="Check every row, save nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        kind = Kind(options["kind"])
        try:
            if options["path"] == "-":
                text = sys.stdin.read()
            else:
                with open(options["path"], encoding="utf-8-sig", newline="") as file:
                    text = file.read()
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {options['path']}: {error}") from None
        report = import_csv(kind, text, actor=SYSTEM, dry_run=options["dry_run"])
        for error in report.errors:
            self.stderr.write(str(error))
        if report.errors:
            required, optional = columns(kind)
            raise CommandError(
                f"{len(report.errors)} bad row(s); nothing was imported. "
                f"Columns: {', '.join(required)} (required), {', '.join(optional)}."
            )
        verb = "Dry run, nothing saved: would create" if report.dry_run else "Imported: created"
        self.stdout.write(
            f"{verb} {report.created}, {'would update' if report.dry_run else 'updated'} "
            f"{report.updated} ({report.rows} row(s) of {kind})."
        )
