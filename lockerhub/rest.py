"""REST framework plumbing shared by every API view: API-key authentication, role-based
permissions, one error shape and pagination.

Who may do what follows the web exactly: a session user has the permissions of their role
groups (``lockerhub.roles``); an API key acts with the permissions of the one role it carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lockerhub import audit
from lockerhub.api_auth import ApiKeyUser


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "lockerhub.api_auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key made with `manage.py create_api_key` (lhk_…).",
        }


def actor_for_request(request: Request) -> str:
    """Who the audit log names for this request: the API key or the signed-in user."""
    if isinstance(request.user, ApiKeyUser):
        return f"api-key:{request.user.key.pk}"
    return audit.actor_for_user(request.user)


class ActionPermission(BasePermission):
    """Each viewset names the permission each of its actions needs in ``action_perms``.

    An action missing from the map is refused: new endpoints are closed until someone
    decides who may use them.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        perms: dict[str, str] = getattr(view, "action_perms", {})
        action = getattr(view, "action", None)
        if action is None and request.method.lower() not in getattr(view, "action_map", {}):
            return True  # no such operation here: let the view answer 405
        perm = perms.get(action) if action else None
        if perm is None and action in ("list", "retrieve", "metadata"):
            perm = perms.get("read")
        if perm is None and action is None and request.method in ("GET", "HEAD", "OPTIONS"):
            perm = perms.get("read")
        return perm is not None and request.user.has_perm(perm)


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _field_errors(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def _flatten(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten(v) for v in value]
    return str(value)


def error_response(code: str, message: str, status_code: int, fields: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return Response({"error": body}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every 4xx as ``{"error": {"code", "message", "fields"?}}``.

    Django's own ``ValidationError`` (raised by actions and model validation) is a 400 too.
    """
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django answer 500 and log it
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        response = error_response(
            "invalid",
            "The request has invalid fields.",
            status.HTTP_400_BAD_REQUEST,
            _field_errors(exc.detail),
        )
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        response = error_response(str(code), str(message), exc.status_code)
    for name, value in headers.items():
        response[name] = value
    return response


@contextmanager
def action_errors() -> Iterator[None]:
    """Turn the refusals actions raise (``ValueError``) into a 400 in the one error shape."""
    try:
        yield
    except ValueError as error:
        raise exceptions.ValidationError({"non_field_errors": [str(error)]}) from None
