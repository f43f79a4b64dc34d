"""Admin for asset types, assets, and the checkout/reservation history.

Checkouts and reservations are history written by the take/return flow (``assets.actions``):
they can be viewed and searched here, never added, edited or deleted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from assets.models import Asset, AssetType, Checkout, Reservation
from lockerhub.admin import ReadOnlyHistoryAdmin


@admin.register(AssetType)
class AssetTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "max_loan_minutes", "requires_pin", "asset_count"]
    list_filter = ["requires_pin"]
    search_fields = ["name", "code"]
    ordering = ["name"]
    prepopulated_fields = {"code": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[AssetType]:
        return super().get_queryset(request).annotate(asset_count=Count("assets"))

    @admin.display(description="Assets", ordering="asset_count")
    def asset_count(self, obj: AssetType) -> int:
        return obj.asset_count


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["asset_tag", "asset_type", "status", "serial_number", "location"]
    list_filter = ["status", "asset_type", "slot__bank"]
    search_fields = ["asset_tag", "serial_number", "notes"]
    list_select_related = ["asset_type", "slot__bank"]
    ordering = ["asset_tag"]
    fields = ["asset_tag", "serial_number", "asset_type", "status", "notes", "location"]

    def get_readonly_fields(self, request: HttpRequest, obj: Asset | None = None) -> list[str]:
        # "Checked out" is set and cleared only by the take/return flow; while a device is out
        # its status is not the admin's to change.
        if obj is not None and obj.status == Asset.Status.CHECKED_OUT:
            return ["status", "location"]
        return ["location"]

    def formfield_for_choice_field(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.Field:
        if db_field.name == "status":
            kwargs["choices"] = [
                c for c in Asset.Status.choices if c[0] != Asset.Status.CHECKED_OUT
            ]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    @admin.display(description="Location", ordering="slot__bank__code")
    def location(self, obj: Asset) -> str:
        try:
            slot = obj.slot
        except Asset.slot.RelatedObjectDoesNotExist:
            return "-"
        return str(slot)


@admin.register(Checkout)
class CheckoutAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "asset",
        "employee",
        "status",
        "slot_out",
        "reserved_at",
        "taken_at",
        "due_at",
        "overdue",
        "returned_at",
        "slot_back",
        "condition",
    ]
    list_filter = ["status", "condition", "asset__asset_type", "slot_out__bank"]
    search_fields = [
        "asset__asset_tag",
        "employee__employee_number",
        "employee__first_name",
        "employee__last_name",
        "condition_note",
    ]
    list_select_related = ["asset", "employee", "slot_out__bank", "slot_back__bank"]
    date_hierarchy = "reserved_at"
    ordering = ["-reserved_at"]

    @admin.display(description="Overdue", boolean=True)
    def overdue(self, obj: Checkout) -> bool:
        return obj.is_overdue(timezone.now())


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "__str__",
        "purpose",
        "status",
        "slot",
        "checkout",
        "requested_by",
        "created_at",
        "expires_at",
        "opened_at",
        "ended_at",
        "damaged",
    ]
    list_filter = ["purpose", "status", "damaged", "slot__bank"]
    search_fields = [
        "slot__bank__code",
        "checkout__asset__asset_tag",
        "checkout__employee__employee_number",
        "reason",
        "damage_note",
    ]
    list_select_related = ["slot__bank", "checkout__asset", "checkout__employee", "requested_by"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
