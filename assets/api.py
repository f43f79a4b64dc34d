"""REST API for asset types, assets and checkouts.

Staff with the role's view permission see every checkout; anyone else signed in sees only
their own (the employee record linked to their account) and nothing else here.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.views import APIView

from assets.models import Asset, AssetType, Checkout
from lockerhub.rest import ActionPermission
from lockerhub.roles import Role, has_role


class AssetTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssetType
        fields = ["id", "code", "name", "max_loan_minutes", "requires_pin"]
        read_only_fields = fields


class AssetSerializer(serializers.ModelSerializer):
    asset_type = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Asset
        fields = ["id", "asset_tag", "serial_number", "asset_type", "status"]
        read_only_fields = fields


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


class AssetViewSet(viewsets.ReadOnlyModelViewSet):
    """Devices by asset tag."""

    serializer_class = AssetSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "assets.view_asset"}
    queryset = Asset.objects.select_related("asset_type")
    filterset_fields = ["status", "asset_type__code"]
    search_fields = ["asset_tag", "serial_number"]


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
