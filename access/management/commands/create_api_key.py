"""Make an API key for another system and print its secret once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.actions import create_api_key
from access.models import ApiKey
from lockerhub.audit import SYSTEM


class Command(BaseCommand):
    help = (
        "Create an API key acting in one staff role. --scope scim makes a bearer token for "
        "an identity provider's SCIM client. The secret is shown only once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help='Who uses it, e.g. "Okta"')
        parser.add_argument(
            "--role", required=True, choices=[value for value, _ in ApiKey.ROLE_CHOICES]
        )
        parser.add_argument("--scope", default=ApiKey.Scope.API, choices=ApiKey.Scope.values)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key, secret = create_api_key(
                options["name"], options["role"], scope=options["scope"], actor=SYSTEM
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"Created API key {key.name!r} ({key.role}, {key.scope}).")
        self.stdout.write("Secret (shown once; send it as 'Authorization: Bearer <secret>'):")
        self.stdout.write(secret)
