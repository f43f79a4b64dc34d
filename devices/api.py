"""REST API for the physical side: sites, banks and slots.

Supervisors and facility managers read them; supervisors take slots out of service. A bank's
device token never leaves the server (only its hash is stored anyway).
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from devices import actions
from devices.models import LockerBank, Site, Slot
from lockerhub.rest import ActionPermission, actor_for_request


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "name", "time_zone"]
        read_only_fields = fields


class LockerBankSerializer(serializers.ModelSerializer):
    class Meta:
        model = LockerBank
        fields = [
            "id",
            "site",
            "code",
            "name",
            "location",
            "protocol",
            "is_online",
            "last_heartbeat_at",
        ]
        read_only_fields = fields


class SlotSerializer(serializers.ModelSerializer):
    bank = serializers.SlugRelatedField(slug_field="code", read_only=True)
    asset = serializers.SlugRelatedField(slug_field="asset_tag", read_only=True)

    class Meta:
        model = Slot
        fields = [
            "id",
            "bank",
            "number",
            "size",
            "has_charger",
            "out_of_service",
            "out_of_service_reason",
            "door_state",
            "lock_state",
            "present",
            "charge_state",
            "charge_state_since",
            "asset",
        ]
        read_only_fields = fields


class OutOfServiceSerializer(serializers.Serializer):
    out_of_service = serializers.BooleanField()
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, data: dict) -> dict:
        if data["out_of_service"] and len(data["reason"].strip()) < 3:
            raise serializers.ValidationError({"reason": "Say why the slot is out of service."})
        return data


class SiteViewSet(viewsets.ReadOnlyModelViewSet):
    """Warehouses and buildings."""

    serializer_class = SiteSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "devices.view_site"}
    queryset = Site.objects.all()
    search_fields = ["name"]


class LockerBankViewSet(viewsets.ReadOnlyModelViewSet):
    """Locker banks, online or not."""

    serializer_class = LockerBankSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "devices.view_lockerbank"}
    queryset = LockerBank.objects.all()
    filterset_fields = ["site", "code", "is_online"]


class SlotViewSet(viewsets.ReadOnlyModelViewSet):
    """Slots with their door, lock, presence and charge state."""

    serializer_class = SlotSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "devices.view_slot",
        "out_of_service": "devices.set_slot_out_of_service",
    }
    filterset_fields = ["bank__code", "charge_state", "out_of_service", "door_state"]

    def get_queryset(self) -> QuerySet[Slot]:
        return Slot.objects.select_related("bank", "asset")

    @extend_schema(request=OutOfServiceSerializer, responses=SlotSerializer)
    @action(detail=True, methods=["post"], url_path="out-of-service")
    def out_of_service(self, request: Request, pk: str | None = None) -> Response:
        """Take a slot out of circulation (with a reason) or put it back."""
        form = OutOfServiceSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        slot = actions.set_out_of_service(
            self.get_object(), actor=actor_for_request(request), **form.validated_data
        )
        return Response(SlotSerializer(slot).data)
