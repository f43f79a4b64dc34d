from django.apps import AppConfig


class LockerHubConfig(AppConfig):
    """Cross-cutting pieces: roles, the audit chain, alerts and the live event bus."""

    name = "lockerhub"
    verbose_name = "LockerHub"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from lockerhub.middleware import note_second_factor_at_sign_in

        user_logged_in.connect(note_second_factor_at_sign_in, dispatch_uid="lockerhub.mfa")
