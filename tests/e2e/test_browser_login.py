"""Signing in with a second factor, in Chromium, against the real server."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from lockerhub.roles import Role
from tests.e2e.conftest import save_screenshot
from tests.web.conftest import PASSWORD, fresh_sign_in_counters, make_user, totp_code  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


def test_a_supervisor_signs_in_with_an_authenticator_code_and_lands_on_the_dashboard(page) -> None:
    _, secret = make_user("sam", Role.SUPERVISOR, mfa=True)

    page.goto("/accounts/login/")
    page.get_by_label("Username or e-mail").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/$"))
    save_screenshot(page, "login-authenticator-code")
    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Sign In").click()

    # The dashboard is the supervisor's own page, whatever it shows.
    page.wait_for_url(re.compile(r"/dashboard/$"))
    assert page.url.endswith("/dashboard/")


def test_a_wrong_code_keeps_the_supervisor_out(page) -> None:
    make_user("sam", Role.SUPERVISOR, mfa=True)

    page.goto("/accounts/login/?next=/people/")
    page.get_by_label("Username or e-mail").fill("sam@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Sign In").click()

    page.get_by_text("Incorrect code.").wait_for()
    # Still half signed in: the people page sends them back to sign-in, which asks for the code.
    page.goto("/people/")
    assert urlsplit(page.url).path in ("/accounts/login/", "/accounts/2fa/authenticate/")
