"""REST API for the cross-cutting records: alerts, the audit log (read only) and API keys.

The audit log and API keys are for administrators (superusers, or accounts given the
``lockerhub.view_auditevent`` / ``access.*_apikey`` permissions in the admin): no staff role
holds them, so no API key can read the audit log or mint another key.
"""

from __future__ import annotations

from datetime import datetime

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access import actions as access_actions
from access.models import ApiKey
from lockerhub import actions as alert_actions
from lockerhub.models import Alert, AuditEvent
from lockerhub.rest import ActionPermission, actor_for_request


class AlertSerializer(serializers.ModelSerializer):
    bank = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "severity",
            "title",
            "details",
            "site",
            "bank",
            "employee",
            "state",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "snoozed_until",
            "resolved_at",
            "resolved_by",
            "escalation_level",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "acknowledged_by": {"help_text": "The user who acknowledged; null for an API key."},
            "resolved_by": {"help_text": "The user who resolved; null for a key or the system."},
        }


class AwareDateTimeField(serializers.DateTimeField):
    """A date and time that must carry its UTC offset: a bare local time is ambiguous."""

    default_error_messages = {
        "naive": "Give the time with its UTC offset, e.g. 2026-03-11T18:00:00+01:00."
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class AlertSnoozeSerializer(serializers.Serializer):
    until = AwareDateTimeField(help_text="Quiet until then; at most 7 days ahead.")


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "at",
            "actor",
            "action",
            "subject_type",
            "subject_id",
            "data",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "role",
            "scope",
            "prefix",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]


class NewApiKeySerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown this once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]


class AlertFilter(django_filters.FilterSet):
    open = django_filters.BooleanFilter(
        field_name="resolved_at", lookup_expr="isnull", label="Only unresolved alerts"
    )

    class Meta:
        model = Alert
        fields = ["kind", "severity", "bank", "site", "employee"]


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts, newest first; ``open=true`` for the unresolved ones.

    Supervisors acknowledge (no further escalation), snooze (no escalation or e-mail until a
    time) and resolve them. A resolved alert refuses all three with a 400.
    """

    serializer_class = AlertSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "lockerhub.view_alert",
        "acknowledge": "lockerhub.acknowledge_alert",
        "snooze": "lockerhub.acknowledge_alert",
        "resolve": "lockerhub.acknowledge_alert",
    }
    filterset_class = AlertFilter
    ordering_fields = ["opened_at", "severity"]

    def get_queryset(self) -> QuerySet[Alert]:
        return Alert.objects.visible_to(self.request.user).select_related("bank")

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        """Someone is on it: the alert stays open and escalates no further. Repeating is harmless."""
        alert = alert_actions.acknowledge_alert(
            self.get_object(), user=request.user, actor=actor_for_request(request)
        )
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=AlertSnoozeSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def snooze(self, request: Request, pk: str | None = None) -> Response:
        """No escalation and no e-mail until ``until`` (at most 7 days ahead)."""
        form = AlertSnoozeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        alert = alert_actions.snooze_alert(
            self.get_object(),
            user=request.user,
            until=form.validated_data["until"],
            actor=actor_for_request(request),
        )
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        """Close the alert. A cause that persists is raised again after its cooldown."""
        alert = alert_actions.resolve_alert(
            self.get_object(), user=request.user, actor=actor_for_request(request)
        )
        return Response(AlertSerializer(alert).data)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The hash-chained audit log, oldest first. Append-only: there is nothing to write."""

    serializer_class = AuditEventSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "lockerhub.view_auditevent"}
    queryset = AuditEvent.objects.all()
    lookup_field = "seq"
    filterset_fields = {
        "action": ["exact"],
        "actor": ["exact"],
        "subject_type": ["exact"],
        "subject_id": ["exact"],
        "at": ["gte", "lt"],
        "seq": ["gt"],
    }


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Keys for other systems. The secret is in the answer to the create call, and nowhere else."""

    serializer_class = ApiKeySerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_apikey",
        "create": "access.add_apikey",
        "revoke": "access.change_apikey",
    }
    queryset = ApiKey.objects.all()
    filterset_fields = ["role", "scope"]

    def get_queryset(self) -> QuerySet[ApiKey]:
        return ApiKey.objects.all()

    @extend_schema(request=ApiKeySerializer, responses={201: NewApiKeySerializer})
    def create(self, request: Request) -> Response:
        form = ApiKeySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        key, secret = access_actions.create_api_key(
            form.validated_data["name"],
            form.validated_data["role"],
            scope=form.validated_data.get("scope", ApiKey.Scope.API),
            created_by=request.user if request.user.pk else None,
            actor=actor_for_request(request),
        )
        key.secret = secret
        return Response(NewApiKeySerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Stop the key working at once."""
        key = access_actions.revoke_api_key(self.get_object(), actor=actor_for_request(request))
        return Response(ApiKeySerializer(key).data)
