"""The kiosk screen, the supervisors' live dashboard and the kiosk pairing pages.

Each view checks who is asking, parses its input, calls one action and renders the result.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from devices import actions
from devices.forms import PairKioskForm, RemoteOpenForm, SlotServiceForm
from devices.kiosk import COOKIE_NAME, DAMAGE_PROBLEMS, kiosk_from_cookie, set_kiosk_cookie
from devices.models import Kiosk, LockerBank, Slot
from devices.queries import LABELS, can_watch_dashboard, dashboard_state
from lockerhub import audit
from lockerhub.actions import acknowledge_alert
from lockerhub.models import Alert
from lockerhub.roles import Role, has_role

# Seconds a result stays on the kiosk before it goes back to "Tap your badge".
KIOSK_RESET_SECONDS = 8


# --- Kiosk ---


@require_GET
def kiosk(request: HttpRequest, code: str) -> HttpResponse:
    """The full-screen page beside a bank; only for a browser paired with that bank."""
    paired = kiosk_from_cookie(request.COOKIES.get(COOKIE_NAME), code)
    if paired is None:
        return render(request, "kiosk/not_paired.html", {"code": code}, status=403)
    actions.note_kiosk_seen(paired)
    return render(
        request,
        "kiosk/kiosk.html",
        {
            "kiosk": paired,
            "bank": paired.bank,
            "problems": DAMAGE_PROBLEMS,
            "reset_seconds": KIOSK_RESET_SECONDS,
            # The bank worker's own feed, on the computer beside the bank that shows this page.
            "local_feed": settings.LOCKERHUB["KIOSK_LOCAL_FEED"],
        },
    )


@require_http_methods(["GET", "POST"])
def kiosk_pair(request: HttpRequest, code: str) -> HttpResponse:
    """Redeem a one-time pairing link in the kiosk's browser.

    GET only asks for confirmation (link previews and prefetchers must not use up the code);
    the button POSTs, sets the kiosk cookie and goes to the kiosk page.
    """
    pending = (
        Kiosk.objects.active()
        .select_related("bank")
        .filter(pairing_code_hash=LockerBank.hash_token(code))
        .first()
    )
    now = timezone.now()
    if pending is None or not pending.pairing_open(now):
        return render(request, "kiosk/pair_invalid.html", status=404)
    if request.method == "GET":
        return render(request, "kiosk/pair.html", {"kiosk": pending})
    try:
        paired, token = actions.redeem_kiosk_pairing(code, now=now)
    except ValueError:
        return render(request, "kiosk/pair_invalid.html", status=404)
    response = redirect("devices:kiosk", code=paired.bank.code)
    response.status_code = 303
    set_kiosk_cookie(response, paired, token)
    return response


def _can_pair(user: Any) -> bool:
    return has_role(user, Role.SUPERVISOR) and user.has_perm("devices.pair_kiosk")


@login_required
@require_http_methods(["GET", "POST"])
def kiosks(request: HttpRequest) -> HttpResponse:
    """Supervisors list the kiosk screens and pair new ones (the link is shown once)."""
    if not _can_pair(request.user):
        raise PermissionDenied
    banks = LockerBank.objects.visible_to(request.user).order_by("code")
    form = PairKioskForm(request.POST or None, banks=banks)
    pairing_url = None
    paired_kiosk = None
    if request.method == "POST" and form.is_valid():
        try:
            pairing = actions.pair_kiosk(
                form.cleaned_data["bank"],
                form.cleaned_data["name"],
                actor=audit.actor_for_user(request.user),
            )
        except ValueError as error:
            form.add_error("name", str(error))
        else:
            pairing_url = request.build_absolute_uri(
                reverse("devices:kiosk-pair", args=[pairing.code])
            )
            paired_kiosk = pairing.kiosk
            form = PairKioskForm(banks=banks)
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request,
        "dashboard/kiosks.html",
        {
            "form": form,
            "kiosks": Kiosk.objects.filter(bank__in=banks).select_related("bank"),
            "pairing_url": pairing_url,
            "paired_kiosk": paired_kiosk,
        },
        status=status,
    )


@login_required
@require_POST
def kiosk_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if not _can_pair(request.user):
        raise PermissionDenied
    target = get_object_or_404(
        Kiosk.objects.filter(bank__in=LockerBank.objects.visible_to(request.user)), pk=pk
    )
    actions.revoke_kiosk(target, actor=audit.actor_for_user(request.user))
    messages.success(request, f"Kiosk {target.name} at {target.bank.code} no longer works.")
    return redirect("devices:kiosks")


# --- Dashboard ---


def _require_dashboard(request: HttpRequest, permission: str | None = None) -> None:
    if not can_watch_dashboard(request.user):
        raise PermissionDenied
    if permission and not request.user.has_perm(permission):
        raise PermissionDenied


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every visible bank live; the page loads the current state and dashboard.js applies events."""
    _require_dashboard(request)
    user = request.user
    state = dashboard_state(user, timezone.now())
    return render(
        request,
        "dashboard/dashboard.html",
        {
            "state": state,
            "can_remote_open": user.has_perm("devices.remote_open_slot"),
            "can_set_service": user.has_perm("devices.set_slot_out_of_service"),
            "can_acknowledge": user.has_perm("lockerhub.acknowledge_alert"),
            "can_pair": _can_pair(user),
            "labels": LABELS,
        },
    )


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(request: HttpRequest, text: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": True, "message": text})
    messages.success(request, text)
    return redirect("devices:dashboard")


def _refused(request: HttpRequest, text: str, fields: dict | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            {"error": {"code": "invalid", "message": text, "fields": fields or {}}}, status=400
        )
    messages.error(request, text)
    return redirect("devices:dashboard")


def _visible_slot(request: HttpRequest, pk: int) -> Slot:
    return get_object_or_404(
        Slot.objects.select_related("bank").filter(
            bank__in=LockerBank.objects.visible_to(request.user)
        ),
        pk=pk,
    )


def _first_error(form: Any) -> str:
    return next(iter(form.errors.values()))[0]


@login_required
@require_POST
def slot_remote_open(request: HttpRequest, pk: int) -> HttpResponse:
    _require_dashboard(request, "devices.remote_open_slot")
    slot = _visible_slot(request, pk)
    form = RemoteOpenForm(request.POST)
    if not form.is_valid():
        return _refused(request, _first_error(form), form.errors.get_json_data())
    try:
        actions.remote_open(slot, user=request.user, reason=form.cleaned_data["reason"])
    except ValueError as error:
        return _refused(request, str(error))
    return _done(request, f"Door {slot.number} at {slot.bank.code} is being opened.")


@login_required
@require_POST
def slot_service(request: HttpRequest, pk: int) -> HttpResponse:
    _require_dashboard(request, "devices.set_slot_out_of_service")
    slot = _visible_slot(request, pk)
    form = SlotServiceForm(request.POST)
    if not form.is_valid():
        return _refused(request, _first_error(form), form.errors.get_json_data())
    out = form.cleaned_data["out_of_service"]
    actions.set_out_of_service(
        slot,
        out_of_service=out,
        reason=form.cleaned_data["reason"],
        actor=audit.actor_for_user(request.user),
    )
    state = "out of service" if out else "back in service"
    return _done(request, f"Door {slot.number} at {slot.bank.code} is {state}.")


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    _require_dashboard(request, "lockerhub.acknowledge_alert")
    alert = get_object_or_404(Alert.objects.visible_to(request.user), pk=pk)
    try:
        acknowledge_alert(alert, user=request.user)
    except ValidationError as error:
        return _refused(request, " ".join(error.messages))
    return _done(request, f"Acknowledged: {alert.title}")
