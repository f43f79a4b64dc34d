"""REST API for asset types, assets and checkouts.

Facility managers register and change assets, send them to maintenance and retire them (an IT
asset system keeps the fleet in step this way); every write is one call into
``assets.actions``. Staff with the role's view permission see every checkout; anyone else
signed in sees only their own (the employee record linked to their account) and nothing else
here.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assets import actions
from assets.models import Asset, AssetType, Checkout
from lockerhub.rest import ActionPermission, action_errors, actor_for_request
from lockerhub.roles import Role, has_role


class AssetTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssetType
        fields = ["id", "code", "name", "max_loan_minutes", "requires_pin"]
        read_only_fields = fields


class AssetSerializer(serializers.ModelSerializer):
    asset_type = serializers.SlugRelatedField(
        slug_field="code", queryset=AssetType.objects.all(), help_text="The asset type's code."
    )

    class Meta:
        model = Asset
        fields = ["id", "asset_tag", "serial_number", "asset_type", "status", "notes"]
        read_only_fields = ["status"]
        # A taken tag is the action's to refuse, inside its transaction.
        extra_kwargs = {"asset_tag": {"validators": []}}


class AssetRetireSerializer(serializers.Serializer):
    reason = serializers.CharField(
        min_length=3, max_length=200, help_text="Why the device leaves the fleet; audited."
    )


class AssetMaintenanceSerializer(serializers.Serializer):
    in_maintenance = serializers.BooleanField()
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, data: dict) -> dict:
        if data["in_maintenance"] and len(data["reason"].strip()) < 3:
            raise serializers.ValidationError({"reason": "Say why the asset goes to maintenance."})
        return data


class CheckoutSerializer(serializers.ModelSerializer):
    asset = serializers.SlugRelatedField(slug_field="asset_tag", read_only=True)
    bank = serializers.CharField(source="slot_out.bank.code", read_only=True)
    slot_out = serializers.IntegerField(source="slot_out.number", read_only=True)

    class Meta:
        model = Checkout
        fields = [
            "id",
            "asset",
            "employee",
            "status",
            "bank",
            "slot_out",
            "reserved_at",
            "taken_at",
            "due_at",
            "returned_at",
            "condition",
        ]
        read_only_fields = fields


class AssetTypeViewSet(viewsets.ReadOnlyModelViewSet):
    """Kinds of device and their loan limits."""

    serializer_class = AssetTypeSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "assets.view_assettype"}
    queryset = AssetType.objects.all()


@extend_schema_view(
    create=extend_schema(
        summary="Register a device",
        description="A new device starts available and is lent once it sits in a bank's slot.",
    ),
    partial_update=extend_schema(
        summary="Change a device's tag, serial number, type or notes",
        description="The status changes through /retire/ and /maintenance/. A device on "
        "loan keeps its type until it is back.",
    ),
)
class AssetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Devices by asset tag. Devices are retired, never deleted: checkouts point at them."""

    serializer_class = AssetSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "assets.view_asset",
        "create": "assets.add_asset",
        "partial_update": "assets.change_asset",
        "retire": "assets.retire_asset",
        "maintenance": "assets.change_asset",
    }
    queryset = Asset.objects.select_related("asset_type")
    filterset_fields = ["status", "asset_type__code"]
    search_fields = ["asset_tag", "serial_number"]

    def perform_create(self, serializer: AssetSerializer) -> None:
        with action_errors():
            serializer.instance = actions.register_asset(
                actor=actor_for_request(self.request), **serializer.validated_data
            )

    # PATCH only: a PUT would make an integration resend fields it does not mean to change.
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        form = self.get_serializer(self.get_object(), data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        with action_errors():
            asset = actions.update_asset(
                form.instance, actor=actor_for_request(request), **form.validated_data
            )
        return Response(self.get_serializer(asset).data)

    @extend_schema(request=AssetRetireSerializer, responses=AssetSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        """Take the device out of the fleet for good. Refused while it is out or being taken."""
        form = AssetRetireSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        asset = actions.retire_asset(
            self.get_object(), actor=actor_for_request(request), **form.validated_data
        )
        return Response(AssetSerializer(asset).data)

    @extend_schema(request=AssetMaintenanceSerializer, responses=AssetSerializer)
    @action(detail=True, methods=["post"])
    def maintenance(self, request: Request, pk: str | None = None) -> Response:
        """Send the device to maintenance (with a reason) or bring it back into service.

        Refused while it is out or being taken; only a device in maintenance comes back.
        """
        form = AssetMaintenanceSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        asset = actions.set_maintenance(
            self.get_object(), actor=actor_for_request(request), **form.validated_data
        )
        return Response(AssetSerializer(asset).data)


class OwnCheckoutsPermission(ActionPermission):
    """Staff who may view checkouts see them all; an employee with an account sees their own."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if super().has_permission(request, view):
            return True
        user = request.user
        return (
            bool(user and user.is_authenticated)
            and has_role(user, Role.EMPLOYEE)
            and hasattr(user, "employee")
        )


class CheckoutViewSet(viewsets.ReadOnlyModelViewSet):
    """Loans, newest first. ``status=active`` lists what is out now."""

    serializer_class = CheckoutSerializer
    permission_classes = [OwnCheckoutsPermission]
    action_perms = {"read": "assets.view_checkout"}
    filterset_fields = {
        "status": ["exact"],
        "employee": ["exact"],
        "asset__asset_tag": ["exact"],
        "slot_out__bank__code": ["exact"],
        "due_at": ["lt", "gte"],
        "reserved_at": ["lt", "gte"],
    }
    ordering_fields = ["reserved_at", "due_at"]

    def get_queryset(self) -> QuerySet[Checkout]:
        checkouts = Checkout.objects.select_related("asset", "slot_out__bank")
        if self.request.user.has_perm("assets.view_checkout"):
            return checkouts
        employee = getattr(self.request.user, "employee", None)
        return checkouts.filter(employee=employee) if employee else checkouts.none()
