"""Web sign-in rules: who must use a second factor, where each role lands, allauth adapters."""

from __future__ import annotations

import base64
import hashlib

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from django.urls import reverse

from lockerhub.roles import ROLE_GROUPS, STAFF_ROLES, Role

STAFF_GROUP_NAMES = frozenset(ROLE_GROUPS[role] for role in STAFF_ROLES)
# Recovery codes only back up another factor; they never count as one on their own.
FACTOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


def requires_mfa(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether this account must sign in with a second factor: staff roles and administrators."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.is_staff:
        return True
    return user.groups.filter(name__in=STAFF_GROUP_NAMES).exists()


def has_mfa(user: AbstractBaseUser) -> bool:
    """Whether the account has a second factor (an authenticator app or a security key)."""
    return Authenticator.objects.filter(user_id=user.pk, type__in=FACTOR_TYPES).exists()


# The page each role starts on, first match wins (a person may hold several roles).
LANDINGS: list[tuple[Role, str]] = [
    (Role.SUPERVISOR, "/dashboard/"),
    (Role.HR, "/people/"),
    (Role.FACILITY_MANAGER, "/reports/"),
]


def landing_url(user: AbstractBaseUser) -> str:
    """Where ``user`` starts after signing in: their role's own page, an employee their devices."""
    if user.is_superuser:
        return "/admin/"
    groups = set(user.groups.values_list("name", flat=True))
    for role, url in LANDINGS:
        if role.group_name in groups:
            return url
    if user.is_staff:
        return "/admin/"
    return reverse("access:mine")


class AccountAdapter(DefaultAccountAdapter):
    """Accounts are made by administrators and HR, never by visitors."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False


class LoginForm(AllauthLoginForm):
    """allauth's login form with labels that say what to type (screen readers read them)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label_suffix = ""
        self.fields["login"].label = "Username or e-mail"
        self.fields["login"].widget.attrs["autocomplete"] = "username"
        self.fields["password"].label = "Password"


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"lockerhub.mfa:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class MFAAdapter(DefaultMFAAdapter):
    """Second factors for LockerHub accounts.

    TOTP secrets and recovery-code seeds are encrypted at rest with a key derived from
    SECRET_KEY (they must be readable to check a code, so they cannot be hashed). Rotating
    SECRET_KEY therefore means everyone sets up their authenticator again.
    """

    def encrypt(self, text: str) -> str:
        return _fernet().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        return _fernet().decrypt(encrypted_text.encode()).decode()

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        # A staff account keeps at least one factor: removing the last one would only send
        # its owner straight back to the setup page, with a weaker session in between.
        user = authenticator.user
        if authenticator.type not in FACTOR_TYPES or not requires_mfa(user):
            return True
        others = Authenticator.objects.filter(user_id=user.pk, type__in=FACTOR_TYPES).exclude(
            pk=authenticator.pk
        )
        return others.exists()
