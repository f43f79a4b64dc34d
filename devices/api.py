"""REST API for the physical side: sites, banks and slots.

Supervisors and facility managers read them; supervisors take slots out of service and open
doors remotely. A bank's device token never leaves the server (only its hash is stored anyway).
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from assets.models import Reservation
from devices import actions
from devices.models import LockerBank, Site, Slot
from lockerhub.rest import ActionPermission, action_errors, actor_for_request


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


class RemoteOpenSerializer(serializers.Serializer):
    reason = serializers.CharField(
        min_length=3, max_length=200, help_text="Why the door is opened; kept in the audit log."
    )


class RemoteOpenReservationSerializer(serializers.ModelSerializer):
    """The door's reservation: the bank executes ``command_id`` once, and never after
    ``expires_at``; the slot's ``door_state`` shows when it actually opened."""

    slot = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Reservation
        fields = ["id", "slot", "command_id", "status", "reason", "created_at", "expires_at"]
        read_only_fields = fields


class SiteViewSet(viewsets.ReadOnlyModelViewSet):
    """Warehouses and buildings. Read only: sites are few and kept in the admin."""

    serializer_class = SiteSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "devices.view_site"}
    queryset = Site.objects.all()
    search_fields = ["name"]


class LockerBankViewSet(viewsets.ReadOnlyModelViewSet):
    """Locker banks, online or not.

    Read only on purpose: a bank is made with ``manage.py create_bank``, which prints its
    device token once, and its slots and wiring are kept in the admin.
    """

    serializer_class = LockerBankSerializer
    permission_classes = [ActionPermission]
    action_perms = {"read": "devices.view_lockerbank"}
    queryset = LockerBank.objects.all()
    filterset_fields = ["site", "code", "is_online"]


class SlotViewSet(viewsets.ReadOnlyModelViewSet):
    """Slots with their door, lock, presence and charge state; supervisors take them out of
    service and open doors remotely."""

    serializer_class = SlotSerializer
    permission_classes = [ActionPermission]
    action_perms = {
        "read": "devices.view_slot",
        "out_of_service": "devices.set_slot_out_of_service",
        "remote_open": "devices.remote_open_slot",
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

    @extend_schema(
        request=RemoteOpenSerializer,
        responses={status.HTTP_202_ACCEPTED: RemoteOpenReservationSerializer},
    )
    @action(detail=True, methods=["post"], url_path="remote-open")
    def remote_open(self, request: Request, pk: str | None = None) -> Response:
        """Send the bank the command to unlock this door, with a reason for the audit log.

        Answers 202: the command is on its way, and the bank opens the door when it gets it
        unless ``expires_at`` has passed. A door already waiting to be opened is refused.
        """
        form = RemoteOpenSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        with action_errors():
            reservation = actions.remote_open(
                self.get_object(),
                user=request.user,
                reason=form.validated_data["reason"],
                actor=actor_for_request(request),
            )
        return Response(
            RemoteOpenReservationSerializer(reservation).data, status=status.HTTP_202_ACCEPTED
        )
