"""Site-wide pages: the role landing and the admin's sign-in."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from lockerhub.auth import landing_url


def home(request: HttpRequest) -> HttpResponse:
    """Send each person to their own page: supervisors to the dashboard, HR to people, and so on."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return redirect(landing_url(request.user))


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin signs in through the one login page, with its rate limit and second factor."""
    next_url = request.GET.get("next", "/admin/")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/admin/"
    if request.user.is_authenticated:
        if not request.user.is_staff:
            # Signed in, but not an administrator: sending them to the login page again
            # would only bounce them back here.
            raise PermissionDenied
        return redirect(next_url)
    return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}")
