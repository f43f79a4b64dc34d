"""HR pages (/people/…) and each employee's own page (/me/).

Views parse the form, call one action from access.actions and render; every page checks the
permission its role group holds (lockerhub.roles).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from access import actions
from access.forms import (
    IssueBadgeForm,
    ReplaceBadgeForm,
    SearchForm,
    ShiftAssignmentForm,
    add_action_errors,
)
from access.models import AccessEvent, Badge, Employee, Shift, ShiftAssignment
from access.queries import search_employees
from assets.models import Checkout
from lockerhub import audit

PAGE_SIZE = 25


def permission(*perms: str) -> Callable:
    """Anonymous visitors go to the login page; signed-in users without ``perms`` get a 403."""

    def decorate(view: Callable) -> Callable:
        return login_required(permission_required(perms, raise_exception=True)(view))

    return decorate


def _actor(request: HttpRequest) -> str:
    return audit.actor_for_user(request.user)


def _posted(request: HttpRequest):
    # Not ``request.POST or None``: an empty POST must be checked (and refused), not shown blank.
    return request.POST if request.method == "POST" else None


def _site_tz(employee: Employee) -> ZoneInfo:
    # HR types times as the employee's site reads them, not as the server does.
    return employee.home_site.tz if employee.home_site else timezone.get_default_timezone()


def _open_checkouts(employee: Employee) -> list[Checkout]:
    return list(
        Checkout.objects.open()
        .filter(employee=employee)
        .select_related("asset__asset_type", "slot_out__bank")
        .order_by("due_at")
    )


@permission("access.view_employee")
def people(request: HttpRequest) -> HttpResponse:
    """Search employees by name, number, department or badge UID; choose some for a shift."""
    form = SearchForm(request.GET)
    found = search_employees()
    if form.is_valid():
        found = search_employees(form.cleaned_data["q"], form.cleaned_data["status"])
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    can_assign = request.user.has_perm("access.add_shiftassignment")
    return render(
        request,
        "people/search.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "can_assign": can_assign,
            "shifts": list(Shift.objects.select_related("site")) if can_assign else [],
        },
    )


@permission("access.view_employee")
def person(request: HttpRequest, pk: int) -> HttpResponse:
    """One employee: badges, shifts, devices out, recent taps."""
    employee = get_object_or_404(
        Employee.objects.select_related("department", "home_site").prefetch_related(
            Prefetch(
                "shift_assignments",
                queryset=ShiftAssignment.objects.select_related("shift__site").order_by(
                    "-valid_from"
                ),
            )
        ),
        pk=pk,
    )
    return render(
        request,
        "people/person.html",
        {
            "employee": employee,
            "badges": list(employee.badges.order_by("-issued_at")),
            "checkouts": _open_checkouts(employee),
            "taps": list(AccessEvent.objects.filter(employee=employee).select_related("bank")[:10]),
            "now": timezone.now(),
        },
    )


@permission("access.view_employee", "access.add_badge")
def issue_badge(request: HttpRequest, pk: int) -> HttpResponse:
    """Issue a badge, permanent or temporary with an expiry, optionally with a PIN."""
    employee = get_object_or_404(Employee.objects.select_related("home_site"), pk=pk)
    tz = _site_tz(employee)
    status = 200
    with timezone.override(tz):  # the expiry is typed in the site's local time
        form = IssueBadgeForm(_posted(request))
        if request.method == "POST":
            if form.is_valid():
                data = form.cleaned_data
                try:
                    badge = actions.issue_badge(
                        employee,
                        data["uid"],
                        actor=_actor(request),
                        technology=data["technology"],
                        temporary=data["temporary"],
                        valid_until=data["valid_until"],
                        pin=data["pin"] or None,
                    )
                except ValidationError as error:
                    add_action_errors(form, error)
                except ValueError as error:  # offboarded: no new badges
                    form.add_error(None, str(error))
                else:
                    messages.success(request, f"Badge {badge.uid} issued to {employee.full_name}.")
                    return redirect("access:person", pk=employee.pk)
            status = 400
    return render(
        request,
        "people/badge_issue.html",
        {"employee": employee, "form": form, "tz": tz},
        status=status,
    )


@permission("access.view_employee", "access.revoke_badge", "access.add_badge")
def replace_badge(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark a badge lost (or withdrawn) and issue its successor in one step."""
    badge = get_object_or_404(Badge.objects.select_related("employee"), pk=pk)
    employee = badge.employee
    form = ReplaceBadgeForm(_posted(request))
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                successor = actions.replace_badge(
                    badge,
                    data["uid"],
                    actor=_actor(request),
                    status=data["status"],
                    reason=data["reason"],
                )
            except ValidationError as error:
                add_action_errors(form, error)
            except ValueError as error:
                form.add_error(None, str(error))
            else:
                messages.success(
                    request,
                    f"Badge {badge.uid} no longer opens anything; {successor.uid} replaces it.",
                )
                return redirect("access:person", pk=employee.pk)
        status = 400
    return render(
        request,
        "people/badge_replace.html",
        {"employee": employee, "badge": badge, "form": form},
        status=status,
    )


@permission("access.view_employee", "access.add_shiftassignment")
def assign_shifts(request: HttpRequest) -> HttpResponse:
    """Put the people chosen on the search page on one shift pattern, all or none."""
    form = ShiftAssignmentForm(
        _posted(request), initial={"employees": request.GET.getlist("employees")}
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                made = actions.assign_shifts(
                    list(data["employees"]),
                    data["shift"],
                    valid_from=data["valid_from"],
                    valid_until=data["valid_until"],
                    actor=_actor(request),
                )
            except ValidationError as error:
                add_action_errors(form, error)
            else:
                messages.success(
                    request,
                    f"{len(made)} {'person is' if len(made) == 1 else 'people are'} now on "
                    f"{data['shift'].name} from {data['valid_from']:%d %b %Y}.",
                )
                return redirect("access:people")
        status = 400
    chosen_ids = (
        form.data.getlist("employees") if form.is_bound else request.GET.getlist("employees")
    )
    chosen = Employee.objects.filter(pk__in=[i for i in chosen_ids if str(i).isdigit()])
    return render(
        request,
        "people/shift_assign.html",
        {"form": form, "chosen": list(chosen.select_related("department"))},
        status=status,
    )


@permission("access.view_employee", "access.offboard_employee")
def offboard(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then end someone's access everywhere and list the devices still out."""
    employee = get_object_or_404(Employee, pk=pk)
    if request.method == "POST":
        result = actions.offboard_employee(employee, actor=_actor(request))
        return render(request, "people/offboarded.html", {"result": result})
    return render(
        request,
        "people/offboard_confirm.html",
        {
            "employee": employee,
            "badges": list(employee.badges.filter(status=Badge.Status.ACTIVE)),
            "checkouts": _open_checkouts(employee),
        },
    )


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    """The signed-in employee's own devices, their due times and recent taps."""
    employee = Employee.objects.filter(user=request.user).first()
    checkouts: list[Checkout] = []
    taps: list[AccessEvent] = []
    if employee is not None:
        checkouts = _open_checkouts(employee)
        taps = list(AccessEvent.objects.filter(employee=employee).select_related("bank")[:10])
    return render(
        request,
        "people/mine.html",
        {"employee": employee, "checkouts": checkouts, "taps": taps, "now": timezone.now()},
    )
