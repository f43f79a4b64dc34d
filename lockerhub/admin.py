"""Admin for the audit chain and alerts, and the read-only base used for every history model.

The audit chain is append-only (the model and database triggers refuse UPDATE and DELETE), so
its admin offers viewing only. ``AuditHead`` is the chain's internal lock row and is left out:
it carries nothing a person needs, and ``verify_chain`` is the way to check the chain.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_and_delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from lockerhub import actions, audit
from lockerhub.models import Alert, AlertDelivery, AuditEvent, WebhookEndpoint


def adopt_saved(obj: Model, saved: Model) -> None:
    """Hand the row an action saved back to the admin's ``obj`` (redirects, log entries and
    change messages use it)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class RefusalsAsMessagesAdmin(admin.ModelAdmin):
    """For admins that save and delete through the write layer.

    Forms check what they can beforehand and show it as field errors. What only the action can
    see, with its rows locked (another change won a race), arrives as ``ValidationError`` or
    ``ValueError`` after the admin's transaction has been rolled back (its log entry too): it
    is shown as an error message on the same page instead of a server error.

    Deleting works the same way: ``check_delete`` says beforehand, on the object's page,
    why it cannot go (the action checks again with its rows locked). Admins whose
    ``delete_queryset`` goes through such an action list ``"delete_selected"`` in ``actions``
    to get the all-or-nothing version below.
    """

    def check_delete(self, obj: Any) -> None:
        """Refuse (``ValidationError``) deleting ``obj``; nothing is refused unless overridden."""

    @admin.action(description="Delete selected %(verbose_name_plural)s", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # All or nothing: one refused row keeps every selected row (and the deletion log
        # entries) as they were.
        try:
            for obj in queryset:
                self.check_delete(obj)
            with transaction.atomic():
                return confirm_and_delete_selected(self, request, queryset)
        except (ValidationError, ValueError) as refusal:
            self.message_user(request, self._refusal_text(refusal), messages.ERROR)
            return None

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ValidationError, ValueError) as refusal:
            return self._refused(request, refusal)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        opts = self.opts
        change = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[object_id],
            current_app=self.admin_site.name,
        )
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_delete_permission(request, obj):
            try:
                self.check_delete(obj)
            except ValidationError as refusal:
                # Said before the confirmation page, not after it.
                self.message_user(request, self._refusal_text(refusal), messages.ERROR)
                return HttpResponseRedirect(change)
        try:
            return super().delete_view(request, object_id, extra_context)
        except (ValidationError, ValueError) as refusal:
            return self._refused(request, refusal, to=change)

    def _refused(
        self, request: HttpRequest, refusal: ValidationError | ValueError, *, to: str = ""
    ) -> HttpResponse:
        if request.method != "POST":
            raise refusal  # only writes are refused; anything else is a fault to see
        self.message_user(request, self._refusal_text(refusal), messages.ERROR)
        return HttpResponseRedirect(to or request.get_full_path())

    @staticmethod
    def _refusal_text(refusal: ValidationError | ValueError) -> str:
        return " ".join(refusal.messages) if isinstance(refusal, ValidationError) else str(refusal)


class AuditedRowAdmin(RefusalsAsMessagesAdmin):
    """For models with no actions of their own (sites, departments, groups, asset types,
    webhook endpoints): added, changed and deleted by ``lockerhub.actions.save_row`` and
    ``delete_row``, audited in the staff member's name.

    Only the fields the form changed are written. A deletion those refuse (rows that still
    refer to the object) is said on the object's page before the confirmation, and changes
    nothing.
    """

    actions = ["delete_selected"]

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        names = form.changed_data if change else list(form.cleaned_data)
        fields = actions.row_fields(self.model)
        values = {n: form.cleaned_data[n] for n in names if n in fields and n in form.cleaned_data}
        saved = actions.save_row(obj, actor=audit.actor_for_user(request.user), **values)
        adopt_saved(obj, saved)

    def save_related(self, request: HttpRequest, form: Any, formsets: list, change: bool) -> None:
        # save_row has set the links; form.save_m2m() would write them again, unaudited.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def check_delete(self, obj: Model) -> None:
        actions.check_delete_row(obj)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        actions.delete_row(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = audit.actor_for_user(request.user)
        for obj in queryset.order_by("pk"):
            actions.delete_row(obj, actor=actor)


class ReadOnlyHistoryAdmin(admin.ModelAdmin):
    """History is written by the write layer only: no add, no change, no delete here.

    Users with the model's view permission can list, search and open records; the change
    form renders read-only.
    """

    # History tables grow without bound; skip the unfiltered COUNT(*) on every page.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyHistoryAdmin):
    list_display = ["seq", "at", "actor", "action", "subject", "short_hash"]
    list_filter = ["action", "subject_type"]
    search_fields = ["seq__exact", "actor", "action", "=subject_id", "=hash"]
    date_hierarchy = "at"
    ordering = ["-seq"]
    fields = [
        "seq",
        "at",
        "actor",
        "action",
        "subject",
        "subject_type",
        "subject_id",
        "data",
        "prev_hash",
        "hash",
    ]
    readonly_fields = fields

    @admin.display(description="Subject")
    def subject(self, obj: AuditEvent) -> str:
        if not obj.subject_type:
            return "-"
        label = f"{obj.subject_type}:{obj.subject_id}"
        app_label, _, model_name = obj.subject_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.subject_id])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="Hash")
    def short_hash(self, obj: AuditEvent) -> str:
        return obj.hash[:12]


class AlertStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are raised by the system and resolved through ``lockerhub.actions``; the record
    itself is read-only here."""

    list_display = [
        "title",
        "kind",
        "severity",
        "site",
        "bank",
        "employee",
        "opened_at",
        "acknowledged_at",
        "resolved_at",
        "escalation_level",
    ]
    list_filter = [AlertStateFilter, "kind", "rule", "severity", "site", "bank"]
    search_fields = [
        "title",
        "dedup_key",
        "bank__code",
        "employee__employee_number",
        "employee__last_name",
    ]
    list_select_related = ["site", "bank", "employee", "acknowledged_by", "resolved_by", "slot"]
    date_hierarchy = "opened_at"
    ordering = ["-opened_at"]
    readonly_fields = [
        "kind",
        "severity",
        "dedup_key",
        "title",
        "details",
        "site",
        "bank",
        "employee",
        "opened_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "escalation_level",
        "snoozed_until",
        "rule",
        "subject",
        "slot",
        "checkout",
        "resolved_by",
        "suppressed_count",
    ]
    fields = readonly_fields
    actions = ["resolve", "acknowledge"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_acknowledge_alert_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("lockerhub.acknowledge_alert")

    @admin.action(description="Resolve selected alerts", permissions=["acknowledge_alert"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        actor = audit.actor_for_user(request.user)
        keys = sorted(
            set(queryset.filter(resolved_at__isnull=True).values_list("dedup_key", flat=True))
        )
        resolved = sum(actions.resolve_alerts(key, actor=actor) for key in keys)
        self.message_user(request, f"{resolved} alert(s) resolved.", messages.SUCCESS)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge_alert"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=True):
            actions.acknowledge_alert(alert, user=request.user)
            done += 1
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedRowAdmin):
    """Where alert events are POSTed. The signing secret is shown once, when made or rotated,
    and the audit log says only that it was set or rotated."""

    list_display = ["name", "url", "is_active", "min_severity", "created_at"]
    list_filter = ["is_active", "min_severity"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "is_active", "kinds", "min_severity"]
    actions = ["rotate_secret", "delete_selected"]

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            self.message_user(
                request,
                f"Signing secret for {obj.name} (shown once, keep it with the receiver): {obj.secret}",
                messages.WARNING,
            )

    @admin.action(description="Rotate the signing secret")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            secret = actions.rotate_webhook_secret(
                endpoint, actor=audit.actor_for_user(request.user)
            )
            self.message_user(
                request, f"New signing secret for {endpoint.name}: {secret}", messages.WARNING
            )


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyHistoryAdmin):
    """The delivery log: every e-mail and webhook of every alert event, with its attempts."""

    list_display = [
        "alert",
        "event",
        "channel",
        "recipient",
        "status",
        "attempts",
        "response_status",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status", "channel", "event"]
    search_fields = ["=uuid", "recipient", "alert__title"]
    list_select_related = ["alert"]
    date_hierarchy = "created_at"
    exclude = ["payload"]
    readonly_fields = [
        "uuid",
        "key",
        "alert",
        "event",
        "channel",
        "endpoint",
        "recipient",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "claimed_until",
        "sent_at",
        "response_status",
        "last_error",
    ]
