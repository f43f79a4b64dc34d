"""Staff and administrators without a second factor are sent to set one up before any staff page."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import User
from django.test import Client

from lockerhub.roles import Role
from tests.conftest import World
from tests.web.conftest import PASSWORD, make_user, totp_code

SETUP = "/accounts/2fa/totp/activate/"


def staff_without_mfa(kind: str) -> User:
    if kind == "superuser":
        return User.objects.create_superuser("root", "root@example.com", PASSWORD)
    if kind == "staff admin":
        return make_user("stan", None, is_staff=True)[0]
    return make_user(kind, Role(kind))[0]


STAFF = ["supervisor", "hr", "facility_manager", "superuser", "staff admin"]
STAFF_PAGES = ["/", "/people/", "/reports/", "/admin/", "/me/", "/dashboard/"]


@pytest.mark.parametrize("kind", STAFF)
def test_staff_without_a_second_factor_are_sent_to_set_one_up_from_any_page(
    world: World, kind: str
) -> None:
    client = Client()
    client.force_login(staff_without_mfa(kind))
    for url in STAFF_PAGES:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == SETUP, url


@pytest.mark.parametrize("kind", STAFF)
def test_staff_without_a_second_factor_cannot_use_the_api_by_session(
    world: World, kind: str
) -> None:
    client = Client()
    client.force_login(staff_without_mfa(kind))
    response = client.get("/api/employees/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "mfa_required"


def test_an_employee_needs_no_second_factor(world: World) -> None:
    client = Client()
    client.force_login(make_user("eve", Role.EMPLOYEE)[0])
    assert client.get("/me/").status_code == 200


def test_a_role_given_during_a_session_asks_for_the_second_factor_at_once(world: World) -> None:
    from tests.conftest import role_group

    user, _ = make_user("eve", Role.EMPLOYEE)
    client = Client()
    client.force_login(user)
    assert client.get("/me/").status_code == 200
    user.groups.add(role_group(Role.SUPERVISOR))
    assert client.get("/me/")["Location"] == SETUP


def test_sign_out_stays_open_to_staff_without_a_second_factor(db) -> None:
    client = Client()
    client.force_login(staff_without_mfa("hr"))
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_setting_up_the_authenticator_app_opens_the_staff_pages(world: World) -> None:
    make_user("hana", Role.HR)
    client = Client()
    client.post("/accounts/login/", {"login": "hana", "password": PASSWORD})

    response = client.get("/people/", follow=True)
    assert response.redirect_chain == [
        (SETUP, 302),
        # allauth asks for the password once more before a factor is added or removed.
        ("/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F", 302),
    ]
    assert "two-factor authentication" in response.text  # says why they are here
    response = client.post(
        "/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F",
        {"password": PASSWORD},
        follow=True,
    )
    html = response.text
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', html) or re.search(
        r'value="([A-Z2-7]{32})"', html
    )
    assert secret, html

    wrong = client.post(SETUP, {"code": "123456"})
    assert wrong.status_code == 200
    assert "Incorrect code." in wrong.text

    response = client.post(SETUP, {"code": totp_code(secret.group(1))})
    assert response["Location"] == "/accounts/2fa/recovery-codes/"
    codes_page = client.get("/accounts/2fa/recovery-codes/").text
    assert "Continue to LockerHub" in codes_page
    assert client.get("/people/").status_code == 200


def test_staff_cannot_remove_their_only_authenticator_app(db) -> None:
    user, secret = make_user("hana", Role.HR, mfa=True)
    client = Client()
    client.post("/accounts/login/", {"login": "hana", "password": PASSWORD})
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})

    response = client.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 200
    assert "You cannot deactivate two-factor authentication." in response.text
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def test_an_employee_may_remove_an_authenticator_app_they_chose_to_add(db) -> None:
    user, secret = make_user("eve", Role.EMPLOYEE, mfa=True)
    client = Client()
    client.post("/accounts/login/", {"login": "eve", "password": PASSWORD})
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})

    response = client.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def test_the_totp_secret_is_not_stored_in_the_clear(db) -> None:
    user, secret = make_user("hana", Role.HR, mfa=True)
    stored = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP).data["secret"]
    assert secret not in stored


async def test_the_live_dashboard_socket_refuses_a_supervisor_without_a_second_factor(
    live_db, fresh_channel_layer, world: World
) -> None:
    from asgiref.sync import sync_to_async
    from django.conf import settings

    from tests.web.test_role_matrix import REFUSED, _socket_answer

    def cookie() -> str:
        client = Client()
        client.force_login(staff_without_mfa("supervisor"))
        return (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )

    assert await _socket_answer("/ws/dashboard/", await sync_to_async(cookie)()) == REFUSED
