"""API-key authentication for the REST API (and the bearer check SCIM shares).

Kept apart from ``lockerhub.rest`` because DRF imports its authentication classes while its
own views module is still loading: this module may import only DRF's lowest layers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser, Group
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from lockerhub.roles import ROLE_PERMISSIONS, Role

if TYPE_CHECKING:
    from rest_framework.request import Request

# last_used_at is bookkeeping: write it at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyUser(AnonymousUser):
    """The caller behind an API key: no database user, the permissions of the key's role.

    ``groups`` is the role's real group, so ``has_role(request.user, role)`` works unchanged
    in any view, and ``has_perm`` answers from the same table the role groups are built from.
    """

    def __init__(self, key: Any) -> None:
        self.key = key
        self.role = Role(key.role)
        self.username = f"api-key:{key.name}"

    def __str__(self) -> str:
        return self.username

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKeyUser) and other.key.pk == self.key.pk

    def __hash__(self) -> int:
        return hash(("api-key", self.key.pk))

    is_active = True

    @property
    def is_anonymous(self) -> bool:
        return False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def groups(self) -> QuerySet[Group]:
        return Group.objects.filter(name=self.role.group_name)

    def get_all_permissions(self, obj: Any = None) -> set[str]:
        return {f"{app}.{codename}" for app, codename in ROLE_PERMISSIONS[self.role]}

    def get_group_permissions(self, obj: Any = None) -> set[str]:
        return self.get_all_permissions(obj)

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions()

    def has_perms(self, perm_list: Any, obj: Any = None) -> bool:
        return all(self.has_perm(perm) for perm in perm_list)

    def has_module_perms(self, module: str) -> bool:
        return any(perm.startswith(f"{module}.") for perm in self.get_all_permissions())


def key_from_header(header: bytes, scope: str) -> Any:
    """The usable key of ``scope`` named by an ``Authorization: Bearer …`` header.

    Returns None when the header is not a bearer key at all (so another authentication may
    try), and raises ``AuthenticationFailed`` for a key that is wrong, revoked or of the
    wrong scope.
    """
    from access.models import ApiKey

    scheme, _, secret = header.decode("latin-1").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None
    prefix = ApiKey.prefix_of(secret)
    key = ApiKey.objects.usable().filter(prefix=prefix).first() if prefix else None
    if key is None or not key.check_secret(secret) or key.scope != scope:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer lhk_…`` with a key of the ``api`` scope."""

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, Any] | None:
        from access.models import ApiKey

        key = key_from_header(get_authorization_header(request), ApiKey.Scope.API)
        return None if key is None else (ApiKeyUser(key), key)

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="api"'
