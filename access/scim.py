"""SCIM 2.0 provisioning of employees (RFC 7643, RFC 7644) at /scim/v2/.

An identity provider (Okta, Entra ID…) creates, updates and deprovisions employees here with
an API key of the ``scim`` scope (``Authorization: Bearer lhk_…``) whose role may add, change
and offboard employees (HR).

Attribute mapping:

======================================  ==========================================
SCIM                                    LockerHub
======================================  ==========================================
``id``                                  the employee's primary key
``userName``                            employee number (unique, what badges and HR
                                        files use; map the IdP's employee ID to it)
``externalId``                          ``external_id``
``name.givenName`` / ``familyName``     first / last name
``emails`` (primary, else first)        e-mail
``active``                              not offboarded; ``false`` offboards (final)
enterprise ``department``               department, by name (made when new)
enterprise ``employeeNumber``           mirrors ``userName`` (ignored on input)
======================================  ==========================================

``DELETE`` offboards too, and the user is gone from SCIM afterwards (404), as RFC 7644 §3.6
asks. Attributes of the core schema LockerHub does not keep (phone numbers, titles…) are
accepted and ignored; anything else is an ``invalidPath`` error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from access import actions
from access.models import ApiKey, Employee
from lockerhub.api_auth import ApiKeyUser, key_from_header

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
CONTENT_TYPE = "application/scim+json"
MAX_RESULTS = 200
REQUIRED_PERMS = (
    "access.view_employee",
    "access.add_employee",
    "access.change_employee",
    "access.offboard_employee",
)

# Core and enterprise attributes LockerHub has no place for: accepted, not stored.
IGNORED_ATTRIBUTES = frozenset(
    {
        "displayname",
        "nickname",
        "profileurl",
        "title",
        "usertype",
        "preferredlanguage",
        "locale",
        "timezone",
        "password",
        "phonenumbers",
        "addresses",
        "photos",
        "ims",
        "roles",
        "entitlements",
        "groups",
        "x509certificates",
        "name.formatted",
        "name.middlename",
        "name.honorificprefix",
        "name.honorificsuffix",
        "manager",
        "costcenter",
        "organization",
        "division",
        "employeenumber",
        "schemas",
        "id",
        "meta",
    }
)


class ScimError(Exception):
    """A request the service provider refuses, in the RFC 7644 §3.12 error shape."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def response(self) -> HttpResponse:
        body: dict[str, Any] = {
            "schemas": [ERROR_SCHEMA],
            "status": str(self.status),
            "detail": self.detail,
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        response = scim_response(body, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="scim"'
        return response


def scim_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE)


def _validation_detail(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)


def scim_view(method: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Authenticate the bearer key, then turn refusals into SCIM errors."""

    @wraps(method)
    def wrapper(self: View, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            try:
                key = key_from_header(
                    request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1"),
                    ApiKey.Scope.SCIM,
                )
            except AuthenticationFailed as failed:
                raise ScimError(401, str(failed.detail)) from None
            if key is None:
                raise ScimError(401, "A bearer token is required.")
            caller = ApiKeyUser(key)
            if not caller.has_perms(REQUIRED_PERMS):
                raise ScimError(403, "This key's role may not provision employees.")
            request.scim_actor = f"api-key:{key.pk}"  # type: ignore[attr-defined]
            return method(self, request, *args, **kwargs)
        except ScimError as error:
            return error.response()
        except ValidationError as error:
            return ScimError(400, _validation_detail(error), "invalidValue").response()

    return wrapper


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScimError(400, "The body is not valid JSON.", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    return body


# --- Employees as SCIM users ---


def user_resource(request: HttpRequest, employee: Employee) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "id": str(employee.pk),
        "userName": employee.employee_number,
        "name": {
            "givenName": employee.first_name,
            "familyName": employee.last_name,
            "formatted": employee.full_name,
        },
        "displayName": employee.full_name,
        "active": employee.status != Employee.Status.OFFBOARDED,
        "emails": (
            [{"value": employee.email, "type": "work", "primary": True}] if employee.email else []
        ),
        ENTERPRISE_SCHEMA: {
            "employeeNumber": employee.employee_number,
            "department": employee.department.name if employee.department else "",
        },
        "meta": {
            "resourceType": "User",
            "created": employee.created_at.isoformat(),
            "location": request.build_absolute_uri(
                reverse("scim:user", kwargs={"pk": employee.pk})
            ),
        },
    }
    if employee.external_id:
        resource["externalId"] = employee.external_id
    return resource


def _visible() -> QuerySet[Employee]:
    return Employee.objects.filter(scim_deleted_at__isnull=True).select_related("department")


def _get_user(pk: str) -> Employee:
    employee = _visible().filter(pk=pk).first() if pk.isdigit() else None
    if employee is None:
        raise ScimError(404, f"User {pk} not found.")
    return employee


def _active(value: Any) -> bool:
    # Entra ID sends booleans as the strings "True"/"False".
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ScimError(400, f"active must be true or false, not {value!r}.", "invalidValue")


def _text(value: Any, attribute: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise ScimError(400, f"{attribute} must be a string.", "invalidValue")
    return str(value)


def _email_from(emails: Any) -> str:
    if emails in (None, []):
        return ""
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise ScimError(400, "emails must be a list of objects.", "invalidValue")
    chosen = next((e for e in emails if e.get("primary") in (True, "true", "True")), emails[0])
    return _text(chosen.get("value"), "emails.value")


class Changes:
    """Employee fields a SCIM request sets, gathered before one call into the actions."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.active: bool | None = None

    def set(self, path: str, value: Any, *, remove: bool = False) -> None:
        """Apply one attribute. ``path`` is case-insensitive, as in RFC 7644 §3.10."""
        lowered = path.lower()
        enterprise = ENTERPRISE_SCHEMA.lower()
        if lowered.startswith(enterprise + ":"):
            lowered = lowered[len(enterprise) + 1 :]
        elif lowered == enterprise:
            self._object(value, remove)
            return
        elif lowered.startswith(USER_SCHEMA.lower() + ":"):
            lowered = lowered[len(USER_SCHEMA) + 1 :]
        if lowered == "username":
            if remove or not _text(value, "userName").strip():
                raise ScimError(400, "userName is required.", "invalidValue")
            self.fields["employee_number"] = _text(value, "userName")
        elif lowered == "externalid":
            self.fields["external_id"] = "" if remove else _text(value, "externalId")
        elif lowered == "active":
            if remove:
                raise ScimError(400, "active cannot be removed.", "mutability")
            self.active = _active(value)
        elif lowered == "name":
            if not remove and not isinstance(value, dict):
                raise ScimError(400, "name must be an object.", "invalidValue")
            for part in ("givenName", "familyName"):
                if remove or part in value or part.lower() in value:
                    self.set(
                        f"name.{part}", None if remove else value.get(part, value.get(part.lower()))
                    )
        elif lowered == "name.givenname":
            if remove or not _text(value, "name.givenName").strip():
                raise ScimError(400, "name.givenName is required.", "invalidValue")
            self.fields["first_name"] = _text(value, "name.givenName")
        elif lowered == "name.familyname":
            self.fields["last_name"] = "" if remove else _text(value, "name.familyName")
        elif lowered == "emails":
            self.fields["email"] = "" if remove else _email_from(value)
        elif lowered in ('emails[type eq "work"].value', "emails.value"):
            self.fields["email"] = "" if remove else _text(value, "emails.value")
        elif lowered == "department":
            self.fields["department"] = None if remove else _text(value, "department")
        elif lowered in IGNORED_ATTRIBUTES or lowered.split("[")[0] in IGNORED_ATTRIBUTES:
            return
        else:
            raise ScimError(400, f"Unknown attribute {path!r}.", "invalidPath")

    def _object(self, value: Any, remove: bool) -> None:
        if remove:
            raise ScimError(400, "Name the attribute to remove.", "noTarget")
        if not isinstance(value, dict):
            raise ScimError(400, "The value must be an object.", "invalidValue")
        for key, item in value.items():
            self.set(key, item)

    @classmethod
    def from_resource(cls, body: dict[str, Any]) -> Changes:
        """Every attribute of a full User (POST, PUT). Absent optional ones are cleared."""
        changes = cls()
        if not _text(body.get("userName"), "userName").strip():
            raise ScimError(400, "userName is required.", "invalidValue")
        name = body.get("name") or {}
        if not isinstance(name, dict):
            raise ScimError(400, "name must be an object.", "invalidValue")
        given = name.get("givenName") or body.get("displayName") or body.get("userName")
        changes.set("userName", body["userName"])
        changes.set("name.givenName", given)
        changes.set("name.familyName", name.get("familyName"))
        changes.set("externalId", body.get("externalId"))
        changes.set("emails", body.get("emails"))
        enterprise = body.get(ENTERPRISE_SCHEMA) or {}
        if not isinstance(enterprise, dict):
            raise ScimError(400, "The enterprise extension must be an object.", "invalidValue")
        changes.set("department", enterprise.get("department") or None)
        if "active" in body:
            changes.set("active", body["active"])
        return changes

    @classmethod
    def from_patch(cls, body: dict[str, Any]) -> Changes:
        """The operations of a PatchOp (RFC 7644 §3.5.2), in the forms Okta and Entra ID send."""
        if PATCH_SCHEMA not in (body.get("schemas") or []):
            raise ScimError(400, f"A PATCH body names the schema {PATCH_SCHEMA}.", "invalidSyntax")
        operations = body.get("Operations")
        if not isinstance(operations, list) or not operations:
            raise ScimError(400, "Operations must be a non-empty list.", "invalidSyntax")
        changes = cls()
        for operation in operations:
            if not isinstance(operation, dict):
                raise ScimError(400, "Each operation must be an object.", "invalidSyntax")
            op = str(operation.get("op", "")).lower()
            path = operation.get("path")
            if op not in ("add", "replace", "remove"):
                raise ScimError(400, f"Unknown operation {operation.get('op')!r}.", "invalidSyntax")
            if path is not None and not isinstance(path, str):
                raise ScimError(400, "path must be a string.", "invalidPath")
            if op == "remove":
                if not path:
                    raise ScimError(400, "A remove operation needs a path.", "noTarget")
                changes.set(path, None, remove=True)
            elif path:
                changes.set(path, operation.get("value"))
            else:
                value = operation.get("value")
                if not isinstance(value, dict):
                    raise ScimError(
                        400, "Without a path the value must be an object.", "invalidValue"
                    )
                for key, item in value.items():
                    changes.set(key, item)
        return changes


FILTER = re.compile(r'^\s*([A-Za-z][\w.:]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
FILTER_FIELDS = {
    "username": "employee_number__iexact",
    "externalid": "external_id",
    "emails.value": "email__iexact",
    "emails": "email__iexact",
    "id": "pk",
}


def _filtered(employees: QuerySet[Employee], expression: str) -> QuerySet[Employee]:
    match = FILTER.match(expression)
    lookup = FILTER_FIELDS.get(match.group(1).lower()) if match else None
    if lookup is None:
        raise ScimError(
            400,
            'Supported filters: userName, externalId, emails.value or id with eq, e.g. userName eq "E1001".',
            "invalidFilter",
        )
    value = json.loads(f'"{match.group(2)}"')
    if lookup == "pk" and not value.isdigit():
        return employees.none()
    return employees.filter(**{lookup: value})


def _int_param(request: HttpRequest, name: str, default: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ScimError(400, f"{name} must be an integer.", "invalidValue") from None


@method_decorator(csrf_exempt, name="dispatch")  # bearer tokens only; no cookie is honoured
class ScimView(View):
    """A SCIM endpoint: errors, even an unsupported method, in the SCIM error shape."""

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = ScimError(405, f"{request.method} is not supported here.").response()
        response["Allow"] = ", ".join(m.upper() for m in self._allowed_methods())
        return response


class UsersView(ScimView):
    """/Users: list (with a filter) and create."""

    @scim_view
    def get(self, request: HttpRequest) -> HttpResponse:
        employees = _visible().order_by("pk")
        if request.GET.get("filter"):
            employees = _filtered(employees, request.GET["filter"])
        start = max(_int_param(request, "startIndex", 1), 1)
        count = min(max(_int_param(request, "count", MAX_RESULTS), 0), MAX_RESULTS)
        total = employees.count()
        page = list(employees[start - 1 : start - 1 + count]) if count else []
        return scim_response(
            {
                "schemas": [LIST_SCHEMA],
                "totalResults": total,
                "startIndex": start,
                "itemsPerPage": len(page),
                "Resources": [user_resource(request, e) for e in page],
            }
        )

    @scim_view
    def post(self, request: HttpRequest) -> HttpResponse:
        changes = Changes.from_resource(_body(request))
        number = changes.fields["employee_number"]
        if Employee.objects.filter(employee_number__iexact=number).exists():
            raise ScimError(409, f"A user with userName {number!r} exists already.", "uniqueness")
        employee = actions.create_employee(actor=request.scim_actor, **changes.fields)  # type: ignore[attr-defined]
        if changes.active is False:
            employee = actions.update_employee(
                employee,
                actor=request.scim_actor,  # type: ignore[attr-defined]
                active=False,
            )
        return scim_response(user_resource(request, _get_user(str(employee.pk))), status=201)


class UserView(ScimView):
    """/Users/<id>: get, replace, patch, delete (which offboards)."""

    @scim_view
    def get(self, request: HttpRequest, pk: str) -> HttpResponse:
        return scim_response(user_resource(request, _get_user(pk)))

    @scim_view
    def put(self, request: HttpRequest, pk: str) -> HttpResponse:
        return self._update(request, _get_user(pk), Changes.from_resource(_body(request)))

    @scim_view
    def patch(self, request: HttpRequest, pk: str) -> HttpResponse:
        return self._update(request, _get_user(pk), Changes.from_patch(_body(request)))

    @scim_view
    def delete(self, request: HttpRequest, pk: str) -> HttpResponse:
        actions.deprovision_employee(_get_user(pk), actor=request.scim_actor)  # type: ignore[attr-defined]
        return HttpResponse(status=204)

    def _update(self, request: HttpRequest, employee: Employee, changes: Changes) -> HttpResponse:
        number = changes.fields.get("employee_number")
        if (
            number
            and Employee.objects.filter(employee_number__iexact=number)
            .exclude(pk=employee.pk)
            .exists()
        ):
            raise ScimError(409, f"A user with userName {number!r} exists already.", "uniqueness")
        if changes.active and employee.status == Employee.Status.OFFBOARDED:
            raise ScimError(
                400,
                "An offboarded employee cannot be reactivated; provision a new user.",
                "mutability",
            )
        actions.update_employee(
            employee,
            actor=request.scim_actor,  # type: ignore[attr-defined]
            active=changes.active,
            **changes.fields,
        )
        return scim_response(user_resource(request, _get_user(str(employee.pk))))


# --- Discovery (RFC 7644 §4) ---


def _meta(request: HttpRequest, resource_type: str, name: str) -> dict[str, str]:
    return {
        "resourceType": resource_type,
        "location": request.build_absolute_uri(reverse(name)),
    }


def _attribute(name: str, *, required: bool = False, **extra: Any) -> dict[str, Any]:
    attribute = {
        "name": name,
        "type": "string",
        "multiValued": False,
        "required": required,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }
    attribute.update(extra)
    return attribute


USER_ATTRIBUTES = [
    _attribute("userName", required=True, uniqueness="server", description="Employee number"),
    _attribute("externalId", caseExact=True),
    _attribute(
        "name",
        type="complex",
        subAttributes=[_attribute("givenName", required=True), _attribute("familyName")],
    ),
    _attribute("displayName", mutability="readOnly"),
    _attribute("active", type="boolean", description="false offboards the employee (final)"),
    _attribute(
        "emails",
        type="complex",
        multiValued=True,
        subAttributes=[
            _attribute("value"),
            _attribute("type"),
            _attribute("primary", type="boolean"),
        ],
    ),
]
ENTERPRISE_ATTRIBUTES = [
    _attribute("employeeNumber", mutability="readOnly", description="Mirrors userName"),
    _attribute("department"),
]


def schema_resources(request: HttpRequest) -> list[dict[str, Any]]:
    return [
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": USER_SCHEMA,
            "name": "User",
            "description": "An employee",
            "attributes": USER_ATTRIBUTES,
            "meta": {
                "resourceType": "Schema",
                "location": request.build_absolute_uri(
                    reverse("scim:schema", kwargs={"urn": USER_SCHEMA})
                ),
            },
        },
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": ENTERPRISE_SCHEMA,
            "name": "EnterpriseUser",
            "description": "Enterprise user extension",
            "attributes": ENTERPRISE_ATTRIBUTES,
            "meta": {
                "resourceType": "Schema",
                "location": request.build_absolute_uri(
                    reverse("scim:schema", kwargs={"urn": ENTERPRISE_SCHEMA})
                ),
            },
        },
    ]


def user_resource_type(request: HttpRequest) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "Employees",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": False}],
        "meta": _meta(request, "ResourceType", "scim:resource-type-user"),
    }


def _list(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


class ServiceProviderConfigView(ScimView):
    """What this service provider supports."""

    @scim_view
    def get(self, request: HttpRequest) -> HttpResponse:
        return scim_response(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "documentationUri": "https://github.com/lockerhub/lockerhub#scim",
                "patch": {"supported": True},
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": MAX_RESULTS},
                "changePassword": {"supported": False},
                "sort": {"supported": False},
                "etag": {"supported": False},
                "authenticationSchemes": [
                    {
                        "type": "oauthbearertoken",
                        "name": "Bearer token",
                        "description": "An API key of the scim scope (manage.py create_api_key --scope scim)",
                        "primary": True,
                    }
                ],
                "meta": _meta(request, "ServiceProviderConfig", "scim:service-provider-config"),
            }
        )


class SchemasView(ScimView):
    @scim_view
    def get(self, request: HttpRequest, urn: str | None = None) -> HttpResponse:
        schemas = schema_resources(request)
        if urn is None:
            return scim_response(_list(schemas))
        for schema in schemas:
            if schema["id"] == urn:
                return scim_response(schema)
        raise ScimError(404, f"Schema {urn} not found.")


class ResourceTypesView(ScimView):
    @scim_view
    def get(self, request: HttpRequest, name: str | None = None) -> HttpResponse:
        if name is None:
            return scim_response(_list([user_resource_type(request)]))
        if name != "User":
            raise ScimError(404, f"Resource type {name} not found.")
        return scim_response(user_resource_type(request))
