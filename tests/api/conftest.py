"""Callers of the REST API: each persona by session, and each staff role by API key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from access.actions import create_api_key
from access.models import ApiKey
from lockerhub.audit import SYSTEM


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_key(db) -> Callable[..., str]:
    def make(role: str, scope: str = ApiKey.Scope.API, name: str = "Integration") -> str:
        return create_api_key(name, role, scope=scope, actor=SYSTEM)[1]

    return make


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def with_second_factor(user: User) -> User:
    """Give a staff account an authenticator app, as the sign-in rules demand of staff."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    if not Authenticator.objects.filter(user=user).exists():
        TOTP.activate(user, generate_totp_secret())
    return user


def session_client(user: User, *, csrf: bool = True) -> APIClient:
    """A browser session of ``user``, signed in with their second factor."""
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(with_second_factor(user))
    return client
