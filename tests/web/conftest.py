"""Sign-in helpers: personas by name, TOTP codes, a clean slate for allauth's counters."""

from __future__ import annotations

import time

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.contrib.auth.models import User
from django.core.cache import cache

# Persona name → the fixture that makes that user (None: not signed in).
PERSONA_FIXTURES: dict[str, str | None] = {
    "anonymous": None,
    "employee": "employee_user",
    "supervisor": "supervisor",
    "hr": "hr_officer",
    "facility_manager": "facility_manager",
    "admin": "admin_user",
}
PERSONAS = list(PERSONA_FIXTURES)


def persona_user(request: pytest.FixtureRequest, persona: str) -> User | None:
    fixture = PERSONA_FIXTURES[persona]
    return None if fixture is None else request.getfixturevalue(fixture)


def totp_code(secret: str, period: int = 30) -> str:
    """The authenticator app's current code, never one about to expire (the server allows no drift)."""
    if time.time() % period > period - 3:
        time.sleep(period - time.time() % period + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // period))


@pytest.fixture(autouse=True)
def fresh_sign_in_counters() -> None:
    """Forget failed sign-ins and used TOTP codes that earlier tests left in the shared Redis.

    Test databases reuse primary keys, so an old "code used" mark could match a new user.
    """
    redis = cache._cache.get_client(write=True)
    for key in redis.scan_iter(match=cache.make_key("allauth*")):
        redis.delete(key)


PASSWORD = "correct horse battery staple"


def make_user(username: str, role=None, *, mfa: bool = False, **extra) -> tuple[User, str | None]:
    """A user in ``role`` (a lockerhub.roles.Role or None); with ``mfa`` an authenticator app,
    whose secret comes back so a test can compute codes."""
    from tests.conftest import give_totp, role_group

    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)
    if role is not None:
        user.groups.add(role_group(role))
    return user, give_totp(user) if mfa else None


@pytest.fixture
def fresh_channel_layer() -> None:
    """A channel layer made in this test's event loop.

    channels_redis keeps per-layer locks bound to the loop that first used them; an earlier
    async test's loop is gone by now, so share nothing with it.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
