"""Admin for the audit chain and alerts, and the read-only base used for every history model.

The audit chain is append-only (the model and database triggers refuse UPDATE and DELETE), so
its admin offers viewing only. ``AuditHead`` is the chain's internal lock row and is left out:
it carries nothing a person needs, and ``verify_chain`` is the way to check the chain.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from lockerhub import actions, audit
from lockerhub.models import Alert, AuditEvent


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
    list_filter = [AlertStateFilter, "kind", "severity", "site", "bank"]
    search_fields = [
        "title",
        "dedup_key",
        "bank__code",
        "employee__employee_number",
        "employee__last_name",
    ]
    list_select_related = ["site", "bank", "employee", "acknowledged_by"]
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
    ]
    fields = readonly_fields
    actions = ["resolve"]

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
