"""REST API for people and access: employees, badges, shifts, assignments, rules, access events.

HR reads and writes people, badges, shift patterns, assignments and access rules; supervisors
read all but the rules. Access events are for supervisors and facility managers. Every write
is one call into ``access.actions``.
"""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access import actions
from access.models import (
    WEEKDAYS,
    AccessEvent,
    AccessRule,
    Badge,
    Department,
    Employee,
    EmployeeGroup,
    Shift,
    ShiftAssignment,
)
from assets.models import AssetType
from devices.models import LockerBank, Site
from lockerhub.rest import ActionPermission, action_errors, actor_for_request

# --- Serializers ---


class EmployeeSerializer(serializers.ModelSerializer):
    department = serializers.SlugRelatedField(
        slug_field="name", queryset=Department.objects.all(), allow_null=True, required=False
    )
    home_site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.all(), allow_null=True, required=False
    )
    active_badges = serializers.IntegerField(read_only=True, source="active_badge_count")

    class Meta:
        model = Employee
        fields = [
            "id",
            "employee_number",
            "first_name",
            "last_name",
            "email",
            "department",
            "home_site",
            "external_id",
            "status",
            "offboarded_at",
            "created_at",
            "active_badges",
        ]
        read_only_fields = ["status", "offboarded_at", "created_at"]
        # Uniqueness is the action's to check, inside its transaction.
        extra_kwargs = {"employee_number": {"validators": []}}


class OffboardResultSerializer(serializers.Serializer):
    employee = EmployeeSerializer()
    already_offboarded = serializers.BooleanField()
    revoked_badges = serializers.ListField(child=serializers.CharField())
    devices_out = serializers.ListField(child=serializers.CharField())
    alert = serializers.IntegerField(allow_null=True)


class BadgeSerializer(serializers.ModelSerializer):
    has_pin = serializers.SerializerMethodField()

    class Meta:
        model = Badge
        fields = [
            "id",
            "employee",
            "uid",
            "technology",
            "status",
            "is_temporary",
            "valid_from",
            "valid_until",
            "has_pin",
            "issued_at",
            "revoked_at",
            "revoked_reason",
        ]
        read_only_fields = fields

    def get_has_pin(self, badge: Badge) -> bool:
        return bool(badge.pin_hash)


class BadgeIssueSerializer(serializers.Serializer):
    employee = serializers.PrimaryKeyRelatedField(queryset=Employee.objects.all())
    uid = serializers.CharField(max_length=40)
    technology = serializers.ChoiceField(
        choices=Badge.Technology.choices, default=Badge.Technology.ISO14443A
    )
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    temporary = serializers.BooleanField(
        default=False, help_text="A temporary badge needs valid_until."
    )
    pin = serializers.CharField(
        required=False, allow_blank=True, write_only=True, help_text="4-8 digits"
    )


class BadgeRevokeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[Badge.Status.REVOKED, Badge.Status.LOST], default=Badge.Status.REVOKED
    )
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class BadgeReplaceSerializer(BadgeRevokeSerializer):
    status = serializers.ChoiceField(
        choices=[Badge.Status.REVOKED, Badge.Status.LOST], default=Badge.Status.LOST
    )
    uid = serializers.CharField(max_length=40, help_text="The new card's UID")
    valid_until = serializers.DateTimeField(required=False, allow_null=True)


class BadgePinSerializer(serializers.Serializer):
    pin = serializers.CharField(allow_null=True, help_text="4-8 digits; null clears the PIN")


class WeekdaysField(serializers.ListField):
    """The days a shift starts on, as ``["Mon", "Tue", …]``; stored as a bit mask."""

    child = serializers.ChoiceField(choices=WEEKDAYS)

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("allow_empty", False)
        super().__init__(**kwargs)

    def to_representation(self, data: int) -> list[str]:
        return [day for i, day in enumerate(WEEKDAYS) if data & (1 << i)]

    def to_internal_value(self, data: object) -> int:
        days = super().to_internal_value(data)
        return sum({1 << WEEKDAYS.index(day) for day in days})


class ShiftSerializer(serializers.ModelSerializer):
    days = WeekdaysField(help_text='The days the shift starts on, e.g. ["Mon", "Tue"].')

    class Meta:
        model = Shift
        fields = ["id", "site", "name", "days", "days_display", "start", "end", "crosses_midnight"]
        read_only_fields = ["days_display", "crosses_midnight"]
        # A name taken at the site is the action's to refuse, inside its transaction.
        validators: list = []


class ShiftAssignmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ShiftAssignment
        fields = ["id", "employee", "shift", "valid_from", "valid_until"]


class AccessRuleSerializer(serializers.ModelSerializer):
    departments = serializers.SlugRelatedField(
        slug_field="name", many=True, queryset=Department.objects.all(), required=False
    )
    groups = serializers.SlugRelatedField(
        slug_field="name", many=True, queryset=EmployeeGroup.objects.all(), required=False
    )
    employees = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Employee.objects.all(), required=False
    )
    asset_types = serializers.SlugRelatedField(
        slug_field="code", many=True, queryset=AssetType.objects.all(), allow_empty=False
    )
    sites = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Site.objects.all(), required=False
    )
    banks = serializers.SlugRelatedField(
        slug_field="code", many=True, queryset=LockerBank.objects.all(), required=False
    )

    class Meta:
        model = AccessRule
        fields = [
            "id",
            "name",
            "is_active",
            "departments",
            "groups",
            "employees",
            "asset_types",
            "sites",
            "banks",
            "require_shift",
            "grace_before_minutes",
            "grace_after_minutes",
            "max_concurrent",
        ]
        extra_kwargs = {
            # A taken name is the action's to refuse, inside its transaction.
            "name": {"validators": []},
            # A badge decision looks one day either side of now for a shift, so a longer grace
            # would silently not work.
            "grace_before_minutes": {"max_value": 24 * 60},
            "grace_after_minutes": {"max_value": 24 * 60},
            # The column's own limit, so PostgreSQL never refuses what validated here.
            "max_concurrent": {"max_value": 32767},
        }


class AccessEventSerializer(serializers.ModelSerializer):
    bank = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = AccessEvent
        fields = ["id", "at", "bank", "uid", "badge", "employee", "granted", "reason", "checkout"]
        read_only_fields = fields


# --- Viewsets ---


class EmployeeViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Employees. People are offboarded, never deleted."""

    serializer_class = EmployeeSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_employee",
        "create": "access.add_employee",
        "update": "access.change_employee",
        "partial_update": "access.change_employee",
        "offboard": "access.offboard_employee",
    }
    filterset_fields = ["status", "department__name", "home_site", "employee_number"]
    search_fields = ["employee_number", "first_name", "last_name", "email"]
    ordering_fields = ["employee_number", "last_name", "created_at"]

    def get_queryset(self) -> QuerySet[Employee]:
        return (
            Employee.objects.select_related("department")
            .annotate(
                active_badge_count=Count("badges", filter=Q(badges__status=Badge.Status.ACTIVE))
            )
            .order_by("last_name", "first_name", "pk")
        )

    def perform_create(self, serializer: EmployeeSerializer) -> None:
        employee = actions.create_employee(
            actor=actor_for_request(self.request), **serializer.validated_data
        )
        serializer.instance = self.get_queryset().get(pk=employee.pk)

    def perform_update(self, serializer: EmployeeSerializer) -> None:
        employee = actions.update_employee(
            serializer.instance, actor=actor_for_request(self.request), **serializer.validated_data
        )
        serializer.instance = self.get_queryset().get(pk=employee.pk)

    @extend_schema(request=None, responses=OffboardResultSerializer)
    @action(detail=True, methods=["post"])
    def offboard(self, request: Request, pk: str | None = None) -> Response:
        """Revoke every badge, end shifts, list the devices still out (DESIGN §4.4)."""
        result = actions.offboard_employee(self.get_object(), actor=actor_for_request(request))
        employee = self.get_queryset().get(pk=result.employee.pk)
        return Response(
            OffboardResultSerializer(
                {
                    "employee": employee,
                    "already_offboarded": result.already_offboarded,
                    "revoked_badges": [b.uid for b in result.revoked_badges],
                    "devices_out": [c.asset.asset_tag for c in result.devices_out],
                    "alert": result.alert.pk if result.alert else None,
                }
            ).data
        )


class BadgeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Badges: issue, revoke or mark lost, replace, set a PIN. The PIN is never shown."""

    serializer_class = BadgeSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_badge",
        "create": "access.add_badge",
        "revoke": "access.revoke_badge",
        "replace": "access.revoke_badge",
        "pin": "access.change_badge",
    }
    filterset_fields = ["status", "employee", "uid", "is_temporary"]
    ordering_fields = ["issued_at", "uid"]

    def get_queryset(self) -> QuerySet[Badge]:
        return Badge.objects.all()

    @extend_schema(request=BadgeIssueSerializer, responses={201: BadgeSerializer})
    def create(self, request: Request) -> Response:
        form = BadgeIssueSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with action_errors():
            badge = actions.issue_badge(
                data["employee"],
                data["uid"],
                actor=actor_for_request(request),
                technology=data["technology"],
                valid_from=data.get("valid_from"),
                valid_until=data.get("valid_until"),
                temporary=data["temporary"],
                pin=data.get("pin") or None,
            )
        return Response(BadgeSerializer(badge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BadgeRevokeSerializer, responses=BadgeSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Revoke the badge or mark it lost: denied at the next tap at every bank."""
        form = BadgeRevokeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        badge = actions.revoke_badge(
            self.get_object(), actor=actor_for_request(request), **form.validated_data
        )
        return Response(BadgeSerializer(badge).data)

    @extend_schema(request=BadgeReplaceSerializer, responses={201: BadgeSerializer})
    @action(detail=True, methods=["post"])
    def replace(self, request: Request, pk: str | None = None) -> Response:
        """Lost or broken card: revoke it and issue the new one in one step. Answers the new badge."""
        form = BadgeReplaceSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with action_errors():
            badge = actions.replace_badge(
                self.get_object(),
                data["uid"],
                actor=actor_for_request(request),
                status=data["status"],
                reason=data["reason"],
                valid_until=data.get("valid_until"),
            )
        return Response(BadgeSerializer(badge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BadgePinSerializer, responses=BadgeSerializer)
    @action(detail=True, methods=["post"])
    def pin(self, request: Request, pk: str | None = None) -> Response:
        """Set or clear the PIN asked for with high-value asset types."""
        form = BadgePinSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        badge = actions.set_badge_pin(
            self.get_object(), form.validated_data["pin"], actor=actor_for_request(request)
        )
        return Response(BadgeSerializer(badge).data)


class ShiftViewSet(viewsets.ModelViewSet):
    """Shift patterns: HR creates and changes them; people follow a change from their next shift.

    Deleting a pattern that someone is still (or will be) assigned to is refused with a 400:
    it would silently end their access, so HR ends or moves those assignments first
    (``DELETE /api/shift-assignments/{id}/``). Assignments that ended before today go with it.
    """

    serializer_class = ShiftSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_shift",
        "create": "access.add_shift",
        "update": "access.change_shift",
        "partial_update": "access.change_shift",
        "destroy": "access.delete_shift",
    }
    queryset = Shift.objects.all()
    filterset_fields = ["site", "name"]

    def perform_create(self, serializer: ShiftSerializer) -> None:
        serializer.instance = actions.create_shift(
            actor=actor_for_request(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer: ShiftSerializer) -> None:
        serializer.instance = actions.update_shift(
            serializer.instance, actor=actor_for_request(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: Shift) -> None:
        actions.delete_shift(instance, actor=actor_for_request(self.request))


class ShiftAssignmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Who works which shift, from when to when. Deleting one that has started ends it yesterday."""

    serializer_class = ShiftAssignmentSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_shiftassignment",
        "create": "access.add_shiftassignment",
        "destroy": "access.delete_shiftassignment",
    }
    queryset = ShiftAssignment.objects.all()
    filterset_fields = ["employee", "shift"]

    def perform_create(self, serializer: ShiftAssignmentSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = actions.assign_shift(
            data["employee"],
            data["shift"],
            valid_from=data["valid_from"],
            valid_until=data.get("valid_until"),
            actor=actor_for_request(self.request),
        )

    def perform_destroy(self, instance: ShiftAssignment) -> None:
        actions.end_shift_assignment(instance, actor=actor_for_request(self.request))


class AccessRuleViewSet(viewsets.ModelViewSet):
    """Who may take what, where and when. Departments and groups are named, asset types and
    banks go by code, employees and sites by id; a list sent on update replaces the old one.

    ``is_active: false`` pauses a rule; DELETE removes it (the audit log keeps what it said).
    Changes hold from the next badge tap.
    """

    serializer_class = AccessRuleSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "access.view_accessrule",
        "create": "access.add_accessrule",
        "update": "access.change_accessrule",
        "partial_update": "access.change_accessrule",
        "destroy": "access.delete_accessrule",
    }
    filterset_fields = ["is_active"]

    def get_queryset(self) -> QuerySet[AccessRule]:
        return AccessRule.objects.prefetch_related(
            "departments", "groups", "employees", "asset_types", "sites", "banks"
        )

    def perform_create(self, serializer: AccessRuleSerializer) -> None:
        rule = actions.create_access_rule(
            actor=actor_for_request(self.request), **serializer.validated_data
        )
        serializer.instance = self.get_queryset().get(pk=rule.pk)

    def perform_update(self, serializer: AccessRuleSerializer) -> None:
        rule = actions.update_access_rule(
            serializer.instance, actor=actor_for_request(self.request), **serializer.validated_data
        )
        serializer.instance = self.get_queryset().get(pk=rule.pk)

    def perform_destroy(self, instance: AccessRule) -> None:
        actions.delete_access_rule(instance, actor=actor_for_request(self.request))


class AccessEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Every badge presentation, granted or denied, newest first."""

    serializer_class = AccessEventSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "access.view_accessevent"}
    queryset = AccessEvent.objects.select_related("bank")
    filterset_fields = {
        "bank__code": ["exact"],
        "employee": ["exact"],
        "uid": ["exact"],
        "granted": ["exact"],
        "reason": ["exact"],
        "at": ["gte", "lt"],
    }
    ordering_fields = ["at"]
