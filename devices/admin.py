"""Admin for sites, locker banks and slots.

Sensor state (door, lock, presence, charge) is written by the bank worker and shown read-only;
taking a slot out of service goes through ``devices.actions.set_out_of_service``, and putting a
device into a slot or taking it out through ``stock_slot`` and ``empty_slot``, so they are
audited and broadcast like every other state change.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from devices import actions
from devices.models import LockerBank, Site, Slot
from lockerhub import audit
from lockerhub.admin import RefusalsAsMessagesAdmin, adopt_saved

SLOT_SENSOR_FIELDS = (
    "door_state",
    "lock_state",
    "door_opened_at",
    "present",
    "charge_state",
    "charge_state_since",
    "state_changed_at",
)
# Where a door is and what it fits: set up by hand. Everything else on a slot has an action.
SLOT_LAYOUT_FIELDS = ("number", "board", "lock_index", "size", "has_charger")


class SlotLayoutFormSet(BaseInlineFormSet):
    def save_existing(self, form: forms.ModelForm, obj: Slot, commit: bool = True) -> Slot:
        # Only what the form changed: a whole-row save would write back sensor readings the
        # bank reported while the page was being saved.
        changed = [name for name in form.changed_data if name in SLOT_LAYOUT_FIELDS]
        if commit and changed:
            obj.save(update_fields=changed)
        return obj


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "bank_count"]
    search_fields = ["name"]
    ordering = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return super().get_queryset(request).annotate(bank_count=Count("banks"))

    @admin.display(description="Banks", ordering="bank_count")
    def bank_count(self, obj: Site) -> int:
        return obj.bank_count


class SlotInline(admin.TabularInline):
    model = Slot
    extra = 0
    fields = [
        "number",
        "board",
        "lock_index",
        "size",
        "has_charger",
        "asset",
        "out_of_service",
        "charge_state",
        "door_state",
    ]
    # The asset is stocked from the slot's own page (autocomplete); here it is shown only, so
    # a bank with many doors renders without one lookup per row.
    readonly_fields = ["asset", "out_of_service", "charge_state", "door_state"]
    formset = SlotLayoutFormSet
    show_change_link = True
    ordering = ["number"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Slot]:
        return super().get_queryset(request).select_related("bank", "asset")


@admin.register(LockerBank)
class LockerBankAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "site",
        "location",
        "is_online",
        "last_heartbeat_at",
        "slot_count",
    ]
    list_filter = ["site", "is_online", "protocol"]
    search_fields = ["code", "name", "location", "site__name"]
    list_select_related = ["site"]
    ordering = ["code"]
    # token_hash is never shown: it is not in ``fields`` (and not editable on the model).
    fields = [
        "site",
        "code",
        "name",
        "location",
        "protocol",
        "invert_hook",
        "door_held_open_seconds",
        "is_online",
        "last_heartbeat_at",
    ]
    readonly_fields = ["is_online", "last_heartbeat_at"]
    inlines = [SlotInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LockerBank]:
        return super().get_queryset(request).annotate(slot_count=Count("slots"))

    @admin.display(description="Slots", ordering="slot_count")
    def slot_count(self, obj: LockerBank) -> int:
        return obj.slot_count


class SlotActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=200,
        label="Reason",
        help_text="Why the slot is taken out of service.",
    )


class SlotForm(forms.ModelForm):
    """Refuses here, as form errors, what stocking or emptying the slot would refuse on saving."""

    class Meta:
        model = Slot
        fields = ["bank", *SLOT_LAYOUT_FIELDS, "asset"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "asset" not in self.changed_data or self.has_error("asset"):
            return cleaned
        # The instance still holds the stored row here; the form's values land on it later.
        asset = cleaned.get("asset")
        try:
            if asset is not None:
                actions.check_stock_slot(self.instance, asset)
            elif self.instance.pk is not None:
                actions.check_empty_slot(self.instance)
        except ValidationError as refusal:
            self.add_error(None, refusal)
        return cleaned


@admin.register(Slot)
class SlotAdmin(RefusalsAsMessagesAdmin):
    list_display = [
        "__str__",
        "bank",
        "number",
        "size",
        "asset",
        "charge_state",
        "door_state",
        "lock_state",
        "present",
        "out_of_service",
        "out_of_service_reason",
        "state_changed_at",
    ]
    list_filter = [
        "bank__site",
        "bank",
        "out_of_service",
        "charge_state",
        "door_state",
        "size",
        "has_charger",
    ]
    search_fields = [
        "bank__code",
        "asset__asset_tag",
        "asset__serial_number",
        "out_of_service_reason",
    ]
    list_select_related = ["bank", "asset"]
    autocomplete_fields = ["bank", "asset"]
    ordering = ["bank__code", "number"]
    fieldsets = [
        (
            None,
            {"fields": ["bank", "number", "board", "lock_index", "size", "has_charger", "asset"]},
        ),
        ("Service", {"fields": ["out_of_service", "out_of_service_reason"]}),
        ("Sensors (reported by the bank)", {"fields": list(SLOT_SENSOR_FIELDS)}),
    ]
    form = SlotForm
    action_form = SlotActionForm
    actions = ["take_out_of_service", "put_back_in_service"]

    def get_readonly_fields(self, request: HttpRequest, obj: Slot | None = None) -> list[str]:
        readonly = ["out_of_service", "out_of_service_reason", *SLOT_SENSOR_FIELDS]
        if obj is not None:
            readonly.insert(0, "bank")  # a door does not move to another cabinet
        return readonly

    def save_model(self, request: HttpRequest, obj: Slot, form: SlotForm, change: bool) -> None:
        asset = form.cleaned_data.get("asset")
        if change:
            layout = [name for name in form.changed_data if name in SLOT_LAYOUT_FIELDS]
            if layout:
                # Not the whole row: the sensor readings are the bank's, and may have moved on.
                obj.save(update_fields=layout)
        else:
            obj.asset = None  # stocked below, through the action
            obj.save()
        if "asset" not in form.changed_data:
            return
        actor = audit.actor_for_user(request.user)
        if asset is not None:
            saved = actions.stock_slot(obj, asset, actor=actor)
        else:
            saved = actions.empty_slot(obj, actor=actor)
        adopt_saved(obj, saved)

    def has_set_slot_out_of_service_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("devices.set_slot_out_of_service")

    def _set_service(
        self, request: HttpRequest, queryset: QuerySet[Slot], *, out_of_service: bool
    ) -> int:
        actor = audit.actor_for_user(request.user)
        reason = (request.POST.get("reason") or "").strip() if out_of_service else ""
        if out_of_service and not reason:
            reason = "Taken out of service from the admin"
        changed = 0
        for slot in queryset:
            if slot.out_of_service == out_of_service:
                continue
            actions.set_out_of_service(
                slot, out_of_service=out_of_service, reason=reason, actor=actor
            )
            changed += 1
        return changed

    @admin.action(description="Take out of service", permissions=["set_slot_out_of_service"])
    def take_out_of_service(self, request: HttpRequest, queryset: QuerySet[Slot]) -> None:
        changed = self._set_service(request, queryset, out_of_service=True)
        self.message_user(request, f"{changed} slot(s) taken out of service.", messages.SUCCESS)

    @admin.action(description="Put back in service", permissions=["set_slot_out_of_service"])
    def put_back_in_service(self, request: HttpRequest, queryset: QuerySet[Slot]) -> None:
        changed = self._set_service(request, queryset, out_of_service=False)
        self.message_user(request, f"{changed} slot(s) put back in service.", messages.SUCCESS)
