"""Request gates that apply to every page."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from lockerhub.auth import has_mfa, requires_mfa

# Set once a staff session is known to belong to an account with a second factor. allauth asks
# for that factor at every sign-in of such an account, so the answer holds for the session.
MFA_CHECKED_SESSION_KEY = "lockerhub.mfa_checked"


class RequireStaffMFAMiddleware:
    """Staff and administrators set up a second factor before they reach any staff page.

    Until they do, pages send them to the authenticator-app setup and the API refuses them
    (a password-only session must not be a way around the pages). Sign-in, sign-out and the
    MFA pages themselves stay open, as do static files and the kiosk; WebSockets do not pass
    through here. API keys are checked by the API itself, so they are not affected.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.open_prefixes = ("/accounts/", settings.STATIC_URL, "/healthz", "/kiosk/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.refusal(request) or self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        user = request.user
        if not user.is_authenticated or request.path.startswith(self.open_prefixes):
            return None
        if request.session.get(MFA_CHECKED_SESSION_KEY) == user.pk:
            return None
        if not requires_mfa(user):
            return None
        if has_mfa(user):
            request.session[MFA_CHECKED_SESSION_KEY] = user.pk
            return None
        message = "Your role needs two-factor authentication: set up an authenticator app first."
        if request.path.startswith("/api/") or request.path.startswith("/scim/"):
            return JsonResponse(
                {"error": {"code": "mfa_required", "message": message, "fields": {}}}, status=403
            )
        messages.warning(request, message)
        return redirect("mfa_activate_totp")


def note_second_factor_at_sign_in(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: object
) -> None:
    """Check the second factor once, when Django signs someone in (user_logged_in).

    Only a head start for the gate above, which still decides: staff pages then cost no
    queries for it. allauth signs a staff account in only after its second factor, so the
    check holds for the new session.
    """
    session = getattr(request, "session", None)
    if session is not None and requires_mfa(user) and has_mfa(user):
        session[MFA_CHECKED_SESSION_KEY] = user.pk
