from django.apps import AppConfig


class LockerHubConfig(AppConfig):
    """Cross-cutting pieces: roles, the audit chain, alerts and the live event bus."""

    name = "lockerhub"
    verbose_name = "LockerHub"
