"""The kiosk screen's credentials and its few WebSocket messages.

A paired kiosk browser holds one cookie: the kiosk's id and token, signed with the site's
secret key, HttpOnly and SameSite=Strict. The page and its WebSocket both look it up here and
accept it only for the kiosk's own bank.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpResponse

from devices.models import Kiosk

COOKIE_NAME = "lockerhub_kiosk"
COOKIE_SALT = "lockerhub.devices.kiosk"
COOKIE_MAX_AGE = timedelta(days=400)  # the longest browsers keep a cookie
MAX_MESSAGE_BYTES = 2048

# What a person can say about a device they return, with one tap each.
DAMAGE_PROBLEMS: dict[str, str] = {
    "screen": "Cracked or broken screen",
    "charging": "Does not charge",
    "power": "Does not turn on",
    "scanner": "Scanner does not read",
    "other": "Other problem",
}


def _signer() -> signing.TimestampSigner:
    # Our own signer (not request.get_signed_cookie), so the WebSocket consumer, which has no
    # request, reads the cookie the same way the page does.
    return signing.TimestampSigner(salt=COOKIE_SALT)


def set_kiosk_cookie(response: HttpResponse, kiosk: Kiosk, token: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        _signer().sign(f"{kiosk.pk}:{token}"),
        max_age=int(COOKIE_MAX_AGE.total_seconds()),
        httponly=True,
        samesite="Strict",
        # Secure wherever the session cookie is (production behind HTTPS).
        secure=settings.SESSION_COOKIE_SECURE,
    )


def kiosk_from_cookie(raw: str | None, bank_code: str) -> Kiosk | None:
    """The kiosk a raw (signed) cookie value stands for, if it is valid for ``bank_code``."""
    if not raw:
        return None
    try:
        value = _signer().unsign(raw, max_age=COOKIE_MAX_AGE)
    except signing.BadSignature:
        return None
    kiosk_id, _, token = value.partition(":")
    if not kiosk_id.isdigit() or not token:
        return None
    kiosk = (
        Kiosk.objects.active()
        .select_related("bank")
        .filter(pk=int(kiosk_id), bank__code=bank_code)
        .first()
    )
    if kiosk is None or not kiosk.check_token(token):
        return None
    return kiosk


class KioskMessageError(ValueError):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def reply(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class DamageReport:
    slot: int
    problem: str

    @property
    def note(self) -> str:
        return f"Reported at the kiosk: {DAMAGE_PROBLEMS[self.problem]}"


def parse_kiosk_message(text: str | None) -> DamageReport:
    """The one thing a kiosk says: ``{"type": "report_damage", "slot": 7, "problem": "screen"}``."""
    if text is None:
        raise KioskMessageError("bad_message", "binary frames are not accepted; send JSON text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise KioskMessageError("bad_message", f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KioskMessageError("bad_message", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise KioskMessageError("bad_message", "a message is a JSON object")
    if data.get("type") != "report_damage":
        raise KioskMessageError("unknown_type", f"unknown message type {data.get('type')!r}")
    slot = data.get("slot")
    if not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= 4096:
        raise KioskMessageError("bad_field", "slot must be a door number")
    problem = data.get("problem")
    if not isinstance(problem, str) or problem not in DAMAGE_PROBLEMS:
        raise KioskMessageError("bad_field", f"problem must be one of {sorted(DAMAGE_PROBLEMS)}")
    return DamageReport(slot, problem)
