"""Admin for asset types, assets, and the checkout/reservation history.

Assets are registered and changed through ``assets.actions`` so every change is audited;
asset types, which have no actions of their own, through ``lockerhub.actions.save_row`` and
``delete_row``.
Checkouts and reservations are history written by the take/return flow (``assets.actions``):
they can be viewed and searched here, never added, edited or deleted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from assets import actions
from assets.models import Asset, AssetType, Checkout, Reservation
from lockerhub import audit
from lockerhub.admin import AuditedRowAdmin, ReadOnlyHistoryAdmin, adopt_saved


@admin.register(AssetType)
class AssetTypeAdmin(AuditedRowAdmin):
    """Asset types are saved and deleted by ``lockerhub.actions``; one that assets have, or
    that an access rule names, is kept."""

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


class AssetForm(forms.ModelForm):
    """Refuses here, as form errors, what the actions would refuse on saving."""

    status_reason = forms.CharField(
        required=False,
        max_length=200,
        label="Reason",
        help_text="Why the status changes (needed to take a device out of circulation); "
        "kept in the audit log.",
    )

    class Meta:
        model = Asset
        fields = ["asset_tag", "serial_number", "asset_type", "status", "notes"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The instance still holds the stored row here; the form's values land on it later.
        asset = self.instance
        if asset.pk is None:
            return cleaned  # the add form offers only the statuses a new asset may start in
        try:
            changes = {
                name: cleaned[name]
                for name in self.changed_data
                if name in actions.ASSET_FIELDS and name in cleaned
            }
            actions.check_update_asset(asset, changes)
            if "status" in self.changed_data and cleaned.get("status"):
                actions.check_status_change(
                    asset, cleaned["status"], cleaned.get("status_reason", "")
                )
        except ValidationError as error:
            if hasattr(error, "error_dict") and "reason" in error.error_dict:
                error = ValidationError({"status_reason": error.error_dict["reason"]})
            self.add_error(None, error)
        return cleaned


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    form = AssetForm
    list_display = ["asset_tag", "asset_type", "status", "serial_number", "location"]
    list_filter = ["status", "asset_type", "slot__bank"]
    search_fields = ["asset_tag", "serial_number", "notes"]
    list_select_related = ["asset_type", "slot__bank"]
    ordering = ["asset_tag"]
    fields = [
        "asset_tag",
        "serial_number",
        "asset_type",
        "status",
        "status_reason",
        "notes",
        "location",
    ]

    def get_fields(self, request: HttpRequest, obj: Asset | None = None) -> list[str]:
        if obj is None:
            # Registered available or in maintenance; no slot holds it yet.
            return ["asset_tag", "serial_number", "asset_type", "status", "notes"]
        if obj.status == Asset.Status.CHECKED_OUT:
            return [f for f in self.fields if f != "status_reason"]
        return self.fields

    def get_form(
        self, request: HttpRequest, obj: Asset | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        status = form.base_fields.get("status")
        if status is None:
            return form
        if obj is None:
            status.choices = [c for c in Asset.Status.choices if c[0] in actions.NEW_ASSET_STATUSES]
        elif obj.status != Asset.Status.RETIRED and not request.user.has_perm(
            "assets.retire_asset"
        ):
            # Retiring is for good: only those allowed to may pick it.
            status.choices = [c for c in status.choices if c[0] != Asset.Status.RETIRED]
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Asset | None = None) -> list[str]:
        # "Checked out" is set and cleared only by the take/return flow; while a device is out
        # its status is not the admin's to change.
        if obj is not None and obj.status == Asset.Status.CHECKED_OUT:
            return ["status", "location"]
        return ["location"]

    def save_model(self, request: HttpRequest, obj: Asset, form: AssetForm, change: bool) -> None:
        actor = audit.actor_for_user(request.user)
        data = form.cleaned_data
        if not change:
            saved = actions.register_asset(
                actor=actor, status=data["status"], **{f: data[f] for f in actions.ASSET_FIELDS}
            )
        else:
            changes = {f: data[f] for f in form.changed_data if f in actions.ASSET_FIELDS}
            saved = actions.update_asset(obj, actor=actor, **changes) if changes else obj
            if "status" in form.changed_data:
                saved = actions.set_asset_status(
                    obj, data["status"], actor=actor, reason=data["status_reason"]
                )
        adopt_saved(obj, saved)

    def has_delete_permission(self, request: HttpRequest, obj: Asset | None = None) -> bool:
        # Assets are retired, never deleted: checkouts and the audit log refer to them.
        return False

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
