"""Admin for sites, locker banks and slots.

Sensor state (door, lock, presence, charge) is written by the bank worker and shown read-only.
Every other write goes through ``devices.actions`` so it is audited: a bank is made by
``create_bank`` (its device token shown once, as a message), changed by ``update_bank`` and
deleted by ``delete_bank``; a door is added, laid out and removed by ``add_slot``,
``update_slot_layout`` and ``delete_slot``, taken out of service by ``set_out_of_service``, and
stocked or emptied by ``stock_slot`` and ``empty_slot``. What those refuse (a slot holding a
device, a bank with history) is a form error or an error message and changes nothing. Sites
have no actions of their own: ``lockerhub.actions.save_row`` and ``delete_row`` write them.
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
from devices.actions import SLOT_LAYOUT_FIELDS
from devices.models import LockerBank, Site, Slot
from lockerhub import audit
from lockerhub.admin import AuditedRowAdmin, RefusalsAsMessagesAdmin, adopt_saved

SLOT_SENSOR_FIELDS = (
    "door_state",
    "lock_state",
    "door_opened_at",
    "present",
    "charge_state",
    "charge_state_since",
    "state_changed_at",
)


def _layout_changes(form: forms.ModelForm) -> dict[str, Any]:
    """The layout fields ``form`` changes, with their new values."""
    return {
        name: form.cleaned_data[name]
        for name in form.changed_data
        if name in SLOT_LAYOUT_FIELDS and name in form.cleaned_data
    }


class SlotLayoutFormSet(BaseInlineFormSet):
    """Adds, lays out and removes a bank's doors through ``devices.actions``, in the admin's name.

    Refusals the actions would make are non-form errors of the inline, checked beforehand.
    """

    request: HttpRequest

    def clean(self) -> None:
        super().clean()
        deleted: list[int] = []
        changed: dict[int, dict[str, Any]] = {}
        for form in self.initial_forms:
            if self._should_delete_form(form):
                deleted.append(form.instance.pk)
            elif changes := _layout_changes(form):
                changed[form.instance.pk] = changes
        if not (deleted or changed):
            return
        # The forms' instances carry the posted values by now: check the stored rows.
        stored = Slot.objects.select_related("bank", "asset").in_bulk([*deleted, *changed])
        refusals: list[str] = []
        for pk, slot in stored.items():
            try:
                if pk in changed:
                    actions.check_slot_layout(slot, changed[pk])
                else:
                    actions.check_delete_slot(slot)
            except ValidationError as refusal:
                refusals.extend(refusal.messages)
        if refusals:
            raise ValidationError(refusals)

    def _actor(self) -> str:
        return audit.actor_for_user(self.request.user)

    def save_new(self, form: forms.ModelForm, commit: bool = True) -> Slot:
        layout = {name: form.cleaned_data[name] for name in SLOT_LAYOUT_FIELDS}
        return actions.add_slot(self.instance, actor=self._actor(), **layout)

    def save_existing(self, form: forms.ModelForm, obj: Slot, commit: bool = True) -> Slot:
        # Only what the form changed: the sensor readings are the bank's, and may have moved on.
        changes = _layout_changes(form)
        return actions.update_slot_layout(obj, actor=self._actor(), **changes) if changes else obj

    def delete_existing(self, obj: Slot, commit: bool = True) -> None:
        actions.delete_slot(obj, actor=self._actor())


@admin.register(Site)
class SiteAdmin(AuditedRowAdmin):
    """Sites are saved and deleted by ``lockerhub.actions``; one with banks, or named by an
    access rule, is kept."""

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

    def get_formset(
        self, request: HttpRequest, obj: LockerBank | None = None, **kwargs: Any
    ) -> type[SlotLayoutFormSet]:
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request
        return formset


class LockerBankForm(forms.ModelForm):
    """A bank's settings; a new bank also says how many doors it has (its slots are made)."""

    slots = forms.IntegerField(
        min_value=0,
        max_value=actions.MAX_SLOTS,
        initial=16,
        label="Doors",
        help_text="Numbered from 1, 16 per lock board: door 1 is board 0, lock index 0.",
    )
    chargers = forms.BooleanField(required=False, initial=True, label="Doors have chargers")

    class Meta:
        model = LockerBank
        fields = list(actions.BANK_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # An existing bank's doors are laid out one by one, below its settings.
            del self.fields["slots"], self.fields["chargers"]


@admin.register(LockerBank)
class LockerBankAdmin(RefusalsAsMessagesAdmin):
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
    form = LockerBankForm
    # token_hash is never shown: it is not in ``fields`` (and not editable on the model).
    fields = [*actions.BANK_FIELDS, "is_online", "last_heartbeat_at"]
    readonly_fields = ["is_online", "last_heartbeat_at"]
    inlines = [SlotInline]
    actions = ["delete_selected"]

    def get_fields(self, request: HttpRequest, obj: LockerBank | None = None) -> list[str]:
        if obj is None:
            return [*actions.BANK_FIELDS, "slots", "chargers"]
        return self.fields

    def get_inlines(self, request: HttpRequest, obj: LockerBank | None) -> list[type]:
        # A new bank's doors are made with it, from the number given.
        return self.inlines if obj is not None else []

    def get_queryset(self, request: HttpRequest) -> QuerySet[LockerBank]:
        return super().get_queryset(request).annotate(slot_count=Count("slots"))

    def save_model(
        self, request: HttpRequest, obj: LockerBank, form: LockerBankForm, change: bool
    ) -> None:
        actor = audit.actor_for_user(request.user)
        data = form.cleaned_data
        if change:
            changes = {
                name: data[name] for name in form.changed_data if name in actions.BANK_FIELDS
            }
            saved = actions.update_bank(obj, actor=actor, **changes) if changes else obj
        else:
            saved, token = actions.create_bank(
                data["site"],
                data["code"],
                slots=data["slots"],
                chargers=data["chargers"],
                actor=actor,
                **{
                    name: data[name] for name in actions.BANK_FIELDS if name not in ("site", "code")
                },
            )
            # Shown once, to the person who made the bank; only its hash is kept, and neither
            # the audit log nor the admin's history has it.
            self.message_user(
                request,
                f"Device token for {saved.code} (shown once; give it to the bank worker as "
                f"LOCKERHUB_BANK_TOKEN): {token}",
                messages.WARNING,
            )
        adopt_saved(obj, saved)

    def check_delete(self, obj: LockerBank) -> None:
        actions.check_delete_bank(obj)

    def delete_model(self, request: HttpRequest, obj: LockerBank) -> None:
        actions.delete_bank(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LockerBank]) -> None:
        actor = audit.actor_for_user(request.user)
        for bank in queryset.order_by("pk"):
            actions.delete_bank(bank, actor=actor)

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
    """Refuses here, as form errors, what laying out, stocking or emptying the slot would
    refuse on saving."""

    class Meta:
        model = Slot
        fields = ["bank", *SLOT_LAYOUT_FIELDS, "asset"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The instance still holds the stored row here; the form's values land on it later.
        if self.instance.pk is not None:
            try:
                actions.check_slot_layout(self.instance, _layout_changes(self))
            except ValidationError as refusal:
                self.add_error(None, refusal)
        if "asset" not in self.changed_data or self.has_error("asset"):
            return cleaned
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
    actions = ["take_out_of_service", "put_back_in_service", "delete_selected"]

    def get_readonly_fields(self, request: HttpRequest, obj: Slot | None = None) -> list[str]:
        readonly = ["out_of_service", "out_of_service_reason", *SLOT_SENSOR_FIELDS]
        if obj is not None:
            readonly.insert(0, "bank")  # a door does not move to another cabinet
        return readonly

    def save_model(self, request: HttpRequest, obj: Slot, form: SlotForm, change: bool) -> None:
        actor = audit.actor_for_user(request.user)
        data = form.cleaned_data
        if change:
            # Not the whole row: the sensor readings are the bank's, and may have moved on.
            layout = _layout_changes(form)
            saved = actions.update_slot_layout(obj, actor=actor, **layout) if layout else obj
        else:
            layout = {name: data[name] for name in SLOT_LAYOUT_FIELDS}
            saved = actions.add_slot(data["bank"], actor=actor, **layout)  # stocked below
        adopt_saved(obj, saved)
        if "asset" not in form.changed_data:
            return
        asset = data.get("asset")
        if asset is not None:
            saved = actions.stock_slot(obj, asset, actor=actor)
        else:
            saved = actions.empty_slot(obj, actor=actor)
        adopt_saved(obj, saved)

    def check_delete(self, obj: Slot) -> None:
        actions.check_delete_slot(obj)

    def delete_model(self, request: HttpRequest, obj: Slot) -> None:
        actions.delete_slot(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Slot]) -> None:
        actor = audit.actor_for_user(request.user)
        for slot in queryset.order_by("pk"):
            actions.delete_slot(slot, actor=actor)

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
