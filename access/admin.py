"""Admin for people, badges, shifts and access rules, and the read-only access log.

Status changes that matter (offboarding, revoking a badge, marking it lost), issuing a badge,
changing a badge's validity, the employee record itself (the same actions SCIM, the API and
the CSV import use) and every write of shift patterns, shift assignments and access rules go
through ``access.actions`` so they are audited and take effect everywhere; the status fields
themselves are read-only in the forms. Departments and groups, which have no actions of their
own, are written by ``lockerhub.actions.save_row`` and ``delete_row``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_and_delete_selected
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from access import actions
from access.models import (
    WEEKDAYS,
    AccessEvent,
    AccessRule,
    Badge,
    Department,
    Employee,
    EmployeeGroup,
    Shift,
    ShiftAssignment,
    normalize_uid,
)
from lockerhub import audit
from lockerhub.admin import (
    AuditedRowAdmin,
    ReadOnlyHistoryAdmin,
    RefusalsAsMessagesAdmin,
    adopt_saved,
)

# --- Badges ---


class BadgeForm(forms.ModelForm):
    """Normalises the UID before the model's validators see it and checks it is free; on an
    issued badge, refuses here, as form errors, what ``update_badge`` would refuse on saving.

    ``Badge.clean()`` also normalises, but Django runs field validators before ``clean()``,
    so ``04:a1:b2:c3`` would be refused as not upper-case hex; doing it here accepts it.
    """

    pin = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Optional, 4 to 8 digits; needed for PIN-protected asset types. Stored hashed.",
    )

    class Meta:
        model = Badge
        fields = ["employee", "uid", "technology", "is_temporary", "valid_from", "valid_until"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "uid" in self.fields:
            # Room for separators ("04:A1:B2:…"); the normalised value is at most 20 characters.
            self.fields["uid"].max_length = 40
            self.fields["uid"].widget.attrs["maxlength"] = 40
            self.fields["uid"].validators = []
        if self.instance.pk is not None:
            self.fields.pop("pin", None)  # a PIN is set when the badge is issued

    def clean_uid(self) -> str:
        return normalize_uid(self.cleaned_data["uid"])

    def clean_pin(self) -> str:
        pin = self.cleaned_data.get("pin", "")
        if pin and not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValidationError("A PIN is 4 to 8 digits.")
        return pin

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk is not None:
            # The instance still holds the stored row here; the form's values land on it later.
            changes = _badge_changes(self)
            if changes:
                try:
                    actions.check_badge_change(self.instance, changes)
                except ValidationError as refusal:
                    self.add_error(None, refusal)
        else:
            employee = cleaned.get("employee") or getattr(self.instance, "employee", None)
            if employee is not None and employee.status == Employee.Status.OFFBOARDED:
                raise ValidationError("This employee is offboarded; no new badges can be issued.")
            uid = cleaned.get("uid")
            if uid and Badge.objects.filter(uid=uid, status=Badge.Status.ACTIVE).exists():
                self.add_error("uid", "An active badge with this UID already exists.")
        return cleaned


def _badge_changes(form: BadgeForm) -> dict[str, Any]:
    """The fields of an issued badge ``form`` changes, with their new values."""
    return {
        name: form.cleaned_data[name]
        for name in form.changed_data
        if name in actions.BADGE_FIELDS and name in form.cleaned_data
    }


def _issue(badge: Badge, form: BadgeForm, request: HttpRequest) -> Badge:
    """Create ``badge`` (built by the form, not saved) through the write layer."""
    issued = actions.issue_badge(
        badge.employee,
        badge.uid,
        actor=audit.actor_for_user(request.user),
        technology=badge.technology,
        valid_from=badge.valid_from,
        valid_until=badge.valid_until,
        temporary=badge.is_temporary,
        pin=form.cleaned_data.get("pin") or None,
    )
    # Hand the saved row back to the admin (redirects, log entries, change messages).
    badge.pk = issued.pk
    badge.status = issued.status
    badge.issued_at = issued.issued_at
    badge._state.adding = False
    badge._state.db = issued._state.db
    return badge


BADGE_STATUS_FIELDS = ["status", "issued_at", "revoked_at", "revoked_reason"]


class BadgeInlineFormSet(BaseInlineFormSet):
    def save_new(self, form: BadgeForm, commit: bool = True) -> Badge:
        badge = super().save_new(form, commit=False)
        return _issue(badge, form, self.request)


class BadgeInline(admin.TabularInline):
    model = Badge
    form = BadgeForm
    formset = BadgeInlineFormSet
    extra = 0
    fields = [
        "uid",
        "technology",
        "status",
        "is_temporary",
        "valid_from",
        "valid_until",
        "issued_at",
        "revoked_at",
        "revoked_reason",
    ]
    readonly_fields = BADGE_STATUS_FIELDS
    can_delete = False
    show_change_link = True
    ordering = ["-issued_at"]

    def get_formset(self, request: HttpRequest, obj: Employee | None = None, **kwargs: Any) -> type:
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request
        return formset

    def has_change_permission(self, request: HttpRequest, obj: Employee | None = None) -> bool:
        # Existing badges are edited (or revoked) from their own page; the inline lists and issues.
        return False

    def has_add_permission(self, request: HttpRequest, obj: Employee | None = None) -> bool:
        if obj is not None and obj.status == Employee.Status.OFFBOARDED:
            return False
        return super().has_add_permission(request, obj)


class ShiftAssignmentForm(forms.ModelForm):
    """Refuses here, as form errors, what the shift assignment actions would refuse on saving."""

    class Meta:
        model = ShiftAssignment
        fields = ["employee", "shift", "valid_from", "valid_until"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The instance still holds the stored row here; the form's values land on it later.
        stored = self.instance
        if stored.pk is not None:
            if not self.has_changed():
                return cleaned  # an untouched row of an offboarded person's page is fine
            if {"employee", "shift"} & set(self.changed_data):
                self.add_error(
                    None,
                    "An assignment keeps its person and shift: end this one and add another.",
                )
                return cleaned
        employee = cleaned.get("employee") or (stored.employee if stored.employee_id else None)
        shift = cleaned.get("shift") or (stored.shift if stored.shift_id else None)
        valid_from = cleaned.get("valid_from")
        if employee is None or shift is None or valid_from is None:
            return cleaned  # already a field error
        try:
            actions.check_shift_assignment(
                employee,
                shift,
                valid_from,
                cleaned.get("valid_until"),
                assignment=stored if stored.pk is not None else None,
            )
        except ValidationError as refusal:
            # On the change page the person and the shift are shown, not form fields.
            for field, errors in refusal.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


class ShiftAssignmentInlineFormSet(BaseInlineFormSet):
    """Adds, changes and ends assignments through ``access.actions``, in the admin's name."""

    def save_new(self, form: ShiftAssignmentForm, commit: bool = True) -> ShiftAssignment:
        data = form.cleaned_data
        return actions.assign_shift(
            self.instance,
            data["shift"],
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
            actor=audit.actor_for_user(self.request.user),
        )

    def save_existing(
        self, form: ShiftAssignmentForm, obj: ShiftAssignment, commit: bool = True
    ) -> ShiftAssignment:
        data = form.cleaned_data
        return actions.update_shift_assignment(
            obj,
            actor=audit.actor_for_user(self.request.user),
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
        )

    def delete_existing(self, obj: ShiftAssignment, commit: bool = True) -> None:
        actions.end_shift_assignment(obj, actor=audit.actor_for_user(self.request.user))


class ShiftAssignmentInline(admin.TabularInline):
    model = ShiftAssignment
    form = ShiftAssignmentForm
    formset = ShiftAssignmentInlineFormSet
    extra = 0
    fields = ["shift", "valid_from", "valid_until"]
    autocomplete_fields = ["shift"]
    ordering = ["-valid_from"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShiftAssignment]:
        return super().get_queryset(request).select_related("shift")

    def get_formset(self, request: HttpRequest, obj: Employee | None = None, **kwargs: Any) -> type:
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request
        return formset

    def has_add_permission(self, request: HttpRequest, obj: Employee | None = None) -> bool:
        if obj is not None and obj.status == Employee.Status.OFFBOARDED:
            return False
        return super().has_add_permission(request, obj)


class BadgeActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=200, label="Reason")


@admin.register(Badge)
class BadgeAdmin(RefusalsAsMessagesAdmin):
    """Badges are issued by ``issue_badge``, changed by ``update_badge`` and revoked or marked
    lost by ``revoke_badge``, never deleted. A badge no longer active is shown read-only."""

    form = BadgeForm
    list_display = [
        "uid",
        "employee",
        "status",
        "technology",
        "is_temporary",
        "valid_from",
        "valid_until",
        "issued_at",
        "revoked_at",
    ]
    list_filter = ["status", "technology", "is_temporary", "employee__home_site"]
    search_fields = [
        "uid",
        "employee__employee_number",
        "employee__first_name",
        "employee__last_name",
    ]
    list_select_related = ["employee"]
    autocomplete_fields = ["employee"]
    date_hierarchy = "issued_at"
    ordering = ["-issued_at"]
    action_form = BadgeActionForm
    actions = ["revoke", "mark_lost"]

    def get_fields(self, request: HttpRequest, obj: Badge | None = None) -> list[str]:
        if obj is None:
            return [
                "employee",
                "uid",
                "technology",
                "is_temporary",
                "valid_from",
                "valid_until",
                "pin",
            ]
        # pin_hash is never shown.
        return [
            "employee",
            "uid",
            "technology",
            "is_temporary",
            "valid_from",
            "valid_until",
            *BADGE_STATUS_FIELDS,
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Badge | None = None) -> list[str]:
        if obj is None:
            return []
        if obj.status != Badge.Status.ACTIVE:
            return self.get_fields(request, obj)  # kept as it ended
        # A badge keeps its holder and UID; a different card is a new badge.
        return ["employee", "uid", *BADGE_STATUS_FIELDS]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Badge], search_term: str
    ) -> tuple[QuerySet[Badge], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        uid = normalize_uid(search_term)
        # "04:a1:b2" finds 04A1B2; the plain search above still covers names and numbers.
        if len(uid) >= 4 and uid != search_term.strip():
            results |= queryset.filter(uid__contains=uid)
        return results, may_have_duplicates

    def save_model(self, request: HttpRequest, obj: Badge, form: BadgeForm, change: bool) -> None:
        if not change:
            _issue(obj, form, request)
            return
        changes = _badge_changes(form)
        if changes:
            saved = actions.update_badge(obj, actor=audit.actor_for_user(request.user), **changes)
            adopt_saved(obj, saved)

    def has_delete_permission(self, request: HttpRequest, obj: Badge | None = None) -> bool:
        # Badges are revoked, never deleted: access events and checkouts point at them.
        return False

    def has_revoke_badge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("access.revoke_badge")

    def _revoke(self, request: HttpRequest, queryset: QuerySet[Badge], status: str) -> int:
        actor = audit.actor_for_user(request.user)
        reason = (request.POST.get("reason") or "").strip()
        changed = 0
        for badge in queryset.filter(status=Badge.Status.ACTIVE):
            updated = actions.revoke_badge(badge, actor=actor, status=status, reason=reason)
            changed += updated.status == status
        return changed

    @admin.action(description="Revoke selected badges", permissions=["revoke_badge"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Badge]) -> None:
        changed = self._revoke(request, queryset, Badge.Status.REVOKED)
        self.message_user(request, f"{changed} badge(s) revoked.", messages.SUCCESS)

    @admin.action(description="Mark selected badges lost", permissions=["revoke_badge"])
    def mark_lost(self, request: HttpRequest, queryset: QuerySet[Badge]) -> None:
        changed = self._revoke(request, queryset, Badge.Status.LOST)
        self.message_user(request, f"{changed} badge(s) marked lost.", messages.SUCCESS)


# --- People ---


@admin.register(Department)
class DepartmentAdmin(AuditedRowAdmin):
    """Saved and deleted by ``lockerhub.actions``; one an access rule names is kept."""

    list_display = ["name", "employee_count"]
    search_fields = ["name"]
    ordering = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Department]:
        return super().get_queryset(request).annotate(employee_count=Count("employees"))

    @admin.display(description="Employees", ordering="employee_count")
    def employee_count(self, obj: Department) -> int:
        return obj.employee_count


@admin.register(EmployeeGroup)
class EmployeeGroupAdmin(AuditedRowAdmin):
    """Saved (members too) and deleted by ``lockerhub.actions``; one an access rule names is
    kept."""

    list_display = ["name", "member_count"]
    search_fields = ["name"]
    ordering = ["name"]
    autocomplete_fields = ["members"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmployeeGroup]:
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: EmployeeGroup) -> int:
        return obj.member_count


@admin.register(Employee)
class EmployeeAdmin(RefusalsAsMessagesAdmin):
    list_display = [
        "employee_number",
        "last_name",
        "first_name",
        "department",
        "home_site",
        "supervisor",
        "status",
        "active_badges",
        "offboarded_at",
    ]
    list_display_links = ["employee_number", "last_name"]
    list_filter = ["status", "department", "home_site"]
    search_fields = ["employee_number", "first_name", "last_name", "email", "=badges__uid"]
    list_select_related = ["department", "home_site", "supervisor"]
    # Sites and departments are few: plain selects (and HR need not see the site admin).
    autocomplete_fields = ["supervisor"]
    raw_id_fields = ["user"]
    ordering = ["last_name", "first_name"]
    fieldsets = [
        (None, {"fields": ["employee_number", "first_name", "last_name", "email"]}),
        ("Organisation", {"fields": ["department", "home_site", "supervisor", "user"]}),
        ("Status", {"fields": ["status", "offboarded_at", "created_at"]}),
    ]
    readonly_fields = ["status", "offboarded_at", "created_at"]
    inlines = [BadgeInline, ShiftAssignmentInline]
    actions = ["offboard"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Employee]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_badge_count=Count("badges", filter=Q(badges__status=Badge.Status.ACTIVE))
            )
        )

    @admin.display(description="Active badges", ordering="active_badge_count")
    def active_badges(self, obj: Employee) -> int:
        return obj.active_badge_count

    def save_model(
        self, request: HttpRequest, obj: Employee, form: forms.ModelForm, change: bool
    ) -> None:
        # The same actions SCIM, the API and the CSV import use; status changes have their own.
        actor = audit.actor_for_user(request.user)
        data = form.cleaned_data
        if change:
            changes = {
                name: data[name] for name in form.changed_data if name in actions.EMPLOYEE_FIELDS
            }
            saved = actions.update_employee(obj, actor=actor, **changes) if changes else obj
        else:
            saved = actions.create_employee(
                actor=actor,
                **{name: data[name] for name in actions.EMPLOYEE_FIELDS if name in data},
            )
        adopt_saved(obj, saved)

    def has_delete_permission(self, request: HttpRequest, obj: Employee | None = None) -> bool:
        # People are offboarded, not deleted: their checkouts and access history stay.
        return False

    def has_offboard_employee_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("access.offboard_employee")

    @admin.action(description="Offboard selected employees", permissions=["offboard_employee"])
    def offboard(self, request: HttpRequest, queryset: QuerySet[Employee]) -> None:
        actor = audit.actor_for_user(request.user)
        offboarded = badges = 0
        for employee in queryset:
            result = actions.offboard_employee(employee, actor=actor)
            if not result.already_offboarded:
                offboarded += 1
            badges += len(result.revoked_badges)
            if result.devices_out:
                tags = ", ".join(c.asset.asset_tag for c in result.devices_out)
                self.message_user(
                    request,
                    f"{result.employee} still has {len(result.devices_out)} device(s) out: {tags}. "
                    "A recovery alert is open.",
                    messages.WARNING,
                )
        self.message_user(
            request,
            f"{offboarded} employee(s) offboarded, {badges} badge(s) revoked.",
            messages.SUCCESS,
        )


# --- Shifts and rules ---


class ShiftForm(forms.ModelForm):
    days = forms.TypedMultipleChoiceField(
        choices=[(1 << i, day) for i, day in enumerate(WEEKDAYS)],
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text="The days the shift starts on.",
    )

    class Meta:
        model = Shift
        fields = ["site", "name", "days", "start", "end"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mask = self.initial.get("days")
        if isinstance(mask, int):
            self.initial["days"] = [1 << i for i in range(7) if mask & (1 << i)]

    def clean_days(self) -> int:
        return sum(set(self.cleaned_data["days"]))


@admin.register(Shift)
class ShiftAdmin(admin.ModelAdmin):
    form = ShiftForm
    list_display = ["name", "site", "start", "end", "days_display", "crosses_midnight"]
    list_filter = ["site"]
    search_fields = ["name", "site__name"]
    list_select_related = ["site"]
    ordering = ["site__name", "start"]
    actions = ["delete_selected"]

    def save_model(self, request: HttpRequest, obj: Shift, form: ShiftForm, change: bool) -> None:
        actor = audit.actor_for_user(request.user)
        if change:
            changes = {
                name: form.cleaned_data[name]
                for name in form.changed_data
                if name in actions.SHIFT_FIELDS
            }
            saved = actions.update_shift(obj, actor=actor, **changes)
        else:
            fields = {name: form.cleaned_data[name] for name in actions.SHIFT_FIELDS}
            saved = actions.create_shift(actor=actor, **fields)
        adopt_saved(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Shift) -> None:
        actions.delete_shift(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Shift]) -> None:
        actor = audit.actor_for_user(request.user)
        for shift in queryset.order_by("pk"):
            actions.delete_shift(shift, actor=actor)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The view's transaction has already been rolled back (its log entry too) when a
        # refusal arrives here: say why on the shift's page instead of failing.
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as refusal:
            self.message_user(request, " ".join(refusal.messages), messages.ERROR)
            opts = self.opts
            return HttpResponseRedirect(
                reverse(
                    f"admin:{opts.app_label}_{opts.model_name}_change",
                    args=[object_id],
                    current_app=self.admin_site.name,
                )
            )

    @admin.action(description="Delete selected %(verbose_name_plural)s", permissions=["delete"])
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[Shift]
    ) -> HttpResponse | None:
        # All or nothing: one shift someone still works keeps every selected shift (and the
        # deletion log entries) as they were.
        try:
            with transaction.atomic():
                return confirm_and_delete_selected(self, request, queryset)
        except ValidationError as refusal:
            self.message_user(request, " ".join(refusal.messages), messages.ERROR)
            return None

    @admin.display(description="Days")
    def days_display(self, obj: Shift) -> str:
        return obj.days_display

    @admin.display(description="Crosses midnight", boolean=True)
    def crosses_midnight(self, obj: Shift) -> bool:
        return obj.crosses_midnight


@admin.register(ShiftAssignment)
class ShiftAssignmentAdmin(RefusalsAsMessagesAdmin):
    """Assignments are made, moved and ended through ``access.actions``.

    Deleting one that has started ends it yesterday instead: the days it was worked stay
    on record, as they explain the access decisions made on them.
    """

    form = ShiftAssignmentForm
    list_display = ["employee", "shift", "site", "valid_from", "valid_until"]
    list_filter = ["shift__site", "shift"]
    search_fields = [
        "employee__employee_number",
        "employee__first_name",
        "employee__last_name",
        "shift__name",
    ]
    list_select_related = ["employee", "shift__site"]
    autocomplete_fields = ["employee", "shift"]
    date_hierarchy = "valid_from"
    ordering = ["employee__last_name", "employee__first_name", "-valid_from"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ShiftAssignment | None = None
    ) -> list[str]:
        # Another person or shift is another assignment; this one only moves its dates.
        return ["employee", "shift"] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: ShiftAssignment, form: ShiftAssignmentForm, change: bool
    ) -> None:
        actor = audit.actor_for_user(request.user)
        data = form.cleaned_data
        if change:
            saved = actions.update_shift_assignment(
                obj, actor=actor, valid_from=data["valid_from"], valid_until=data["valid_until"]
            )
        else:
            saved = actions.assign_shift(
                data["employee"],
                data["shift"],
                valid_from=data["valid_from"],
                valid_until=data["valid_until"],
                actor=actor,
            )
        adopt_saved(obj, saved)

    def delete_model(self, request: HttpRequest, obj: ShiftAssignment) -> None:
        actions.end_shift_assignment(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ShiftAssignment]) -> None:
        actor = audit.actor_for_user(request.user)
        kept = 0
        for assignment in queryset.order_by("pk"):
            kept += actions.end_shift_assignment(assignment, actor=actor) is not None
        if kept:
            self.message_user(
                request,
                f"{kept} of the selected assignments had started: they end no later than "
                "yesterday and stay on record.",
                messages.INFO,
            )

    def log_deletions(
        self, request: HttpRequest, queryset: QuerySet[ShiftAssignment] | list[ShiftAssignment]
    ) -> Any:
        # Only the ones not yet started are removed; the admin's history says what happened.
        today = timezone.localdate()
        removed = [a for a in queryset if a.valid_from >= today]
        for assignment in queryset:
            if assignment.valid_from < today and (
                assignment.valid_until is None or assignment.valid_until >= today
            ):
                self.log_change(request, assignment, "Ended yesterday instead of deleted.")
        return super().log_deletions(request, removed) if removed else None

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        kept = ShiftAssignment.objects.filter(pk=obj_id).first()
        if kept is None:
            return super().response_delete(request, obj_display, obj_id)
        self.message_user(
            request,
            f"{obj_display} had started, so it stays on record, ending {kept.valid_until}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:access_shiftassignment_changelist", current_app=self.admin_site.name)
        )

    @admin.display(description="Site", ordering="shift__site__name")
    def site(self, obj: ShiftAssignment) -> str:
        return str(obj.shift.site)


def _names(objects: Any) -> str:
    return ", ".join(str(o) for o in objects) or "-"


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "is_active",
        "who",
        "asset_type_list",
        "where",
        "require_shift",
        "max_concurrent",
    ]
    list_filter = ["is_active", "require_shift", "asset_types", "sites", "banks"]
    search_fields = ["name"]
    ordering = ["name"]
    filter_horizontal = ["departments", "groups", "asset_types", "sites", "banks"]
    autocomplete_fields = ["employees"]
    fieldsets = [
        (None, {"fields": ["name", "is_active"]}),
        ("Who", {"fields": ["departments", "groups", "employees"]}),
        ("What", {"fields": ["asset_types", "max_concurrent"]}),
        (
            "Where",
            {"fields": ["sites", "banks"], "description": "Neither sites nor banks: everywhere."},
        ),
        ("When", {"fields": ["require_shift", "grace_before_minutes", "grace_after_minutes"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessRule]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("departments", "groups", "asset_types", "sites", "banks")
            .annotate(employee_count=Count("employees", distinct=True))
        )

    def save_model(
        self, request: HttpRequest, obj: AccessRule, form: forms.ModelForm, change: bool
    ) -> None:
        actor = audit.actor_for_user(request.user)
        names = (*actions.ACCESS_RULE_FIELDS, *actions.ACCESS_RULE_LINKS)
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in names}
            saved = actions.update_access_rule(obj, actor=actor, **changes)
        else:
            saved = actions.create_access_rule(
                actor=actor, **{name: form.cleaned_data[name] for name in names}
            )
        adopt_saved(obj, saved)

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        # The action has set the rule's links; form.save_m2m() would write them again, unaudited.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: AccessRule) -> None:
        actions.delete_access_rule(obj, actor=audit.actor_for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccessRule]) -> None:
        actor = audit.actor_for_user(request.user)
        for rule in queryset.order_by("pk"):
            actions.delete_access_rule(rule, actor=actor)

    @admin.display(description="Who")
    def who(self, obj: AccessRule) -> str:
        parts = [str(d) for d in obj.departments.all()] + [str(g) for g in obj.groups.all()]
        if obj.employee_count:
            parts.append(f"{obj.employee_count} named employee(s)")
        return ", ".join(parts) or "nobody"

    @admin.display(description="Asset types")
    def asset_type_list(self, obj: AccessRule) -> str:
        return _names(obj.asset_types.all())

    @admin.display(description="Where")
    def where(self, obj: AccessRule) -> str:
        places = [str(s) for s in obj.sites.all()] + [str(b) for b in obj.banks.all()]
        return ", ".join(places) or "everywhere"


# --- History ---


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyHistoryAdmin):
    list_display = ["at", "bank", "uid", "employee", "granted", "reason", "slot"]
    list_filter = ["granted", "reason", "bank__site", "bank"]
    search_fields = [
        "uid",
        "employee__employee_number",
        "employee__first_name",
        "employee__last_name",
        "bank__code",
    ]
    list_select_related = ["bank", "employee", "slot__bank"]
    date_hierarchy = "at"
    ordering = ["-at"]
