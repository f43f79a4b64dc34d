"""Who gets what on every page and every WebSocket route: each persona on each URL, the expected answer.

Each row is a URL and the answer for each persona, in PERSONAS order. An int is the status;
a string is a redirect (302) whose target starts with it. Add a row for every new page or
route; ``{ana}``, ``{badge}`` and ``{slot}`` stand for the world's employee, badge and a slot.

Staff personas have a second factor set up (tests/conftest.py), so a 200 here is the page
itself, not the MFA setup; tests/web/test_mfa_required.py covers staff without one.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from lockerhub.asgi import application
from lockerhub.models import AuditEvent
from tests.conftest import World
from tests.web.conftest import PERSONAS, persona_user

LOGIN = "/accounts/login/?next="
ADMIN_LOGIN = "/admin/login/?next="
MFA = "/accounts/2fa/"

# url                                  anonymous  employee  supervisor  hr  facility_manager  admin
PAGES: list[tuple[str, tuple[int | str, ...]]] = [
    ("/",                               (LOGIN, "/me/", "/dashboard/", "/people/", "/reports/", "/admin/")),
    ("/healthz",                        (200, 200, 200, 200, 200, 200)),
    ("/accounts/login/",                (200, "/", "/", "/", "/", "/")),
    ("/accounts/signup/",               (200, "/", "/", "/", "/", "/")),  # says "closed"
    (MFA,                               (LOGIN, 200, 200, 200, 200, 200)),
    ("/me/",                            (LOGIN, 200, 200, 200, 200, 200)),
    ("/people/",                        (LOGIN, 403, 200, 200, 403, 200)),
    ("/people/?q=ana&status=active",    (LOGIN, 403, 200, 200, 403, 200)),
    ("/people/{ana}/",                  (LOGIN, 403, 200, 200, 403, 200)),
    ("/people/{ana}/badges/new/",       (LOGIN, 403, 403, 200, 403, 200)),
    ("/people/badges/{badge}/replace/", (LOGIN, 403, 403, 200, 403, 200)),
    ("/people/{ana}/offboard/",         (LOGIN, 403, 403, 200, 403, 200)),
    ("/people/shifts/assign/",          (LOGIN, 403, 403, 200, 403, 200)),
    ("/people/import/",                 (LOGIN, 403, 403, 200, 403, 200)),
    ("/people/999999/",                 (LOGIN, 403, 404, 404, 403, 404)),
    ("/reports/",                       (LOGIN, 403, 403, 403, 200, 200)),
    ("/reports/peaks/",                 (LOGIN, 403, 403, 403, 200, 200)),
    ("/reports/peaks.csv",              (LOGIN, 403, 403, 403, 200, 200)),
    ("/admin/",                         (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200)),
    ("/admin/access/employee/",         (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200)),
    ("/admin/login/",                   ("/accounts/login/?next=%2Fadmin%2F", 403, 403, 403, 403, "/admin/")),
    ("/api/employees/",                 (401, 403, 200, 200, 403, 200)),
    ("/api/checkouts/",                 (401, 200, 200, 200, 200, 200)),
    ("/api/alerts/",                    (401, 403, 200, 403, 200, 200)),
    ("/api/audit-events/",              (401, 403, 403, 403, 403, 200)),
    ("/api/schema/",                    (401, 200, 200, 200, 200, 200)),
    ("/api/reports/",                   (401, 403, 403, 403, 200, 200)),
    ("/scim/v2/Users",                  (401, 401, 401, 401, 401, 401)),  # SCIM keys only
    # The live pages. A kiosk page needs the cookie of a browser paired with that bank.
    ("/dashboard/",                     (LOGIN, 403, 200, 403, 403, 200)),
    ("/dashboard/kiosks/",              (LOGIN, 403, 200, 403, 403, 200)),
    ("/kiosk/BANK-A/",                  (403, 403, 403, 403, 403, 403)),
    ("/kiosk/pair/not-a-code/",         (404, 404, 404, 404, 404, 404)),
]  # fmt: skip

# Changes, posted with nothing filled in: whoever may make the change is told what is missing
# (400, or the dashboard's redirect with a message); whoever may not gets 403. Nothing changes.
# url                                     anonymous  employee  supervisor  hr  facility_manager  admin
POSTS: list[tuple[str, tuple[int | str, ...]]] = [
    ("/people/{ana}/badges/new/",          (LOGIN, 403, 403, 400, 403, 400)),
    ("/people/badges/{badge}/replace/",    (LOGIN, 403, 403, 400, 403, 400)),
    ("/people/shifts/assign/",             (LOGIN, 403, 403, 400, 403, 400)),
    ("/people/import/",                    (LOGIN, 403, 403, 200, 403, 200)),  # the form again
    ("/dashboard/slots/{slot}/open/",      (LOGIN, 403, "/dashboard/", 403, 403, "/dashboard/")),
    ("/dashboard/slots/{slot}/service/",   (LOGIN, 403, "/dashboard/", 403, 403, "/dashboard/")),
    ("/dashboard/kiosks/",                 (LOGIN, 403, 400, 403, 403, 400)),
]  # fmt: skip

OPEN, REFUSED = "open", "refused"
# path                               anonymous  employee  supervisor  hr  facility_manager  admin
SOCKETS: list[tuple[str, tuple[str, ...]]] = [
    # A bank's worker authenticates with its device token; no browser session opens it.
    ("/ws/devices/BANK-A/",          (REFUSED, REFUSED, REFUSED, REFUSED, REFUSED, REFUSED)),
    ("/ws/devices/NO-SUCH-BANK/",    (REFUSED, REFUSED, REFUSED, REFUSED, REFUSED, REFUSED)),
    # A kiosk's screen follows its bank only with that kiosk's cookie, never a user's session.
    ("/ws/kiosk/BANK-A/",            (REFUSED, REFUSED, REFUSED, REFUSED, REFUSED, REFUSED)),
    ("/ws/dashboard/",               (REFUSED, REFUSED, OPEN, REFUSED, REFUSED, OPEN)),
]  # fmt: skip


def test_every_row_names_an_answer_for_each_persona() -> None:
    assert all(len(answers) == len(PERSONAS) for _, answers in PAGES + POSTS + SOCKETS)


def _ids(world: World) -> dict[str, int]:
    return {"ana": world.ana.pk, "badge": world.ana_badge.pk, "slot": world.slot(5).pk}


def _answer(response) -> int | str:
    if response.status_code == 302:
        return response["Location"]
    return response.status_code


def _matches(answer: int | str, expected: int | str) -> bool:
    if isinstance(expected, str):
        return isinstance(answer, str) and answer.startswith(expected)
    return answer == expected


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_gets_the_expected_answer_on_every_page(
    world: World, request: pytest.FixtureRequest, persona: str
) -> None:
    client = Client()
    user = persona_user(request, persona)
    if user is not None:
        client.force_login(user)
    if persona == "employee":  # the employee persona is Ana, who badges at the banks
        world.ana.user = user
        world.ana.save(update_fields=["user"])
    ids = _ids(world)
    column = PERSONAS.index(persona)
    wrong = []
    for url, answers in PAGES:
        answer = _answer(client.get(url.format(**ids)))
        if not _matches(answer, answers[column]):
            wrong.append(f"GET {url}: expected {answers[column]!r}, got {answer!r}")
    audit_before = AuditEvent.objects.count()
    for url, answers in POSTS:
        answer = _answer(client.post(url.format(**ids), {"reason": ""}))
        if not _matches(answer, answers[column]):
            wrong.append(f"POST {url}: expected {answers[column]!r}, got {answer!r}")
    assert wrong == []
    assert AuditEvent.objects.count() == audit_before  # refused or incomplete: nothing changed


async def _socket_answer(path: str, cookie: str | None) -> str:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=3)
    except Exception:  # the router or a middleware refused the handshake
        return REFUSED
    if not connected:
        return REFUSED
    try:
        first = await communicator.receive_output(timeout=0.5)
    except TimeoutError:
        first = None
    await communicator.disconnect()
    return REFUSED if first and first["type"] == "websocket.close" else OPEN


@pytest.mark.parametrize("persona", PERSONAS)
async def test_each_persona_gets_the_expected_answer_on_every_websocket_route(
    live_db, fresh_channel_layer, world: World, request: pytest.FixtureRequest, persona: str
) -> None:
    def session_cookie() -> str | None:
        user = persona_user(request, persona)
        if user is None:
            return None
        client = Client()
        client.force_login(user)
        return (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )

    cookie = await sync_to_async(session_cookie)()
    column = PERSONAS.index(persona)
    wrong = []
    for path, answers in SOCKETS:
        answer = await _socket_answer(path, cookie)
        if answer != answers[column]:
            wrong.append(f"{path}: expected {answers[column]!r}, got {answer!r}")
    assert wrong == []
