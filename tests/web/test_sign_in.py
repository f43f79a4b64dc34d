"""Signing in through allauth: by username or e-mail, a second factor for staff, a rate limit,
each role on its own page afterwards, and the admin's login going the same way."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from lockerhub.roles import Role
from tests.conftest import give_totp, role_group
from tests.web.conftest import PASSWORD, make_user, persona_user, totp_code

TOO_MANY = "Too many failed login attempts. Try again later."


def sign_in(client: Client, login: str, password: str = PASSWORD, **extra):
    return client.post("/accounts/login/", {"login": login, "password": password}, **extra)


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_an_employee_signs_in_with_a_username(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    client = Client()
    response = sign_in(client, "eve")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert is_signed_in(client)


def test_an_employee_signs_in_with_an_email_address_in_any_case(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    client = Client()
    assert sign_in(client, "EVE@example.com").status_code == 302
    assert is_signed_in(client)


def test_a_wrong_password_is_refused_in_plain_words(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    client = Client()
    response = sign_in(client, "eve", "not the password")
    assert response.status_code == 200
    assert "The username and/or password you specified are not correct." in response.text
    assert not is_signed_in(client)


def test_staff_are_asked_for_their_authenticator_code_before_they_are_signed_in(db) -> None:
    _, secret = make_user("hana", Role.HR, mfa=True)
    client = Client()

    response = sign_in(client, "hana")
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert not is_signed_in(client)
    page = client.get("/accounts/2fa/authenticate/")
    assert '<label for="id_code">' in page.text

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert "Incorrect code." in wrong.text
    assert not is_signed_in(client)

    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response["Location"] == "/"
    assert is_signed_in(client)
    assert client.get("/")["Location"] == "/people/"


def test_a_recovery_code_stands_in_for_a_lost_phone(db) -> None:
    from allauth.mfa.models import Authenticator
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    user, _ = make_user("sam", Role.SUPERVISOR, mfa=True)
    codes = RecoveryCodes(Authenticator.objects.get(user=user, type="recovery_codes"))
    client = Client()
    sign_in(client, "sam")
    response = client.post("/accounts/2fa/authenticate/", {"code": codes.get_unused_codes()[0]})
    assert response["Location"] == "/"
    assert is_signed_in(client)


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    client = Client()
    for _ in range(5):
        response = sign_in(client, "eve", "guess")
        assert TOO_MANY not in response.text

    response = sign_in(client, "eve")  # the right password, too late

    assert response.status_code == 200
    assert TOO_MANY in response.text
    assert not is_signed_in(client)


def test_the_lock_holds_for_the_account_from_another_address(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    for _ in range(5):
        sign_in(Client(), "eve", "guess", REMOTE_ADDR="10.0.0.1")
    response = sign_in(Client(), "eve", REMOTE_ADDR="10.0.0.2")
    assert TOO_MANY in response.text


def test_wrong_authenticator_codes_count_towards_the_lock(db) -> None:
    _, secret = make_user("hana", Role.HR, mfa=True)
    client = Client()
    sign_in(client, "hana")
    for _ in range(5):
        client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert TOO_MANY in response.text
    assert not is_signed_in(client)


def test_the_admin_login_is_the_rate_limited_login_page(db) -> None:
    response = Client().get("/admin/login/?next=/admin/access/badge/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Faccess%2Fbadge%2F"


def test_the_admin_login_ignores_a_next_address_on_another_site(db) -> None:
    response = Client().get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


def test_a_posted_admin_login_form_signs_nobody_in(db) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    client = Client()
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not is_signed_in(client)


def test_an_administrator_signs_in_with_a_code_and_reaches_the_admin(db) -> None:
    secret = give_totp(User.objects.create_superuser("root", "root@example.com", PASSWORD))
    client = Client()
    response = client.post(
        "/accounts/login/?next=%2Fadmin%2F", {"login": "root", "password": PASSWORD}
    )
    assert response["Location"].startswith("/accounts/2fa/authenticate/")
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    ("persona", "landing"),
    [
        ("employee", "/me/"),
        ("supervisor", "/dashboard/"),
        ("hr", "/people/"),
        ("facility_manager", "/reports/"),
        ("admin", "/admin/"),
    ],
)
def test_each_role_lands_on_its_own_page(
    db, request: pytest.FixtureRequest, persona: str, landing: str
) -> None:
    client = Client()
    client.force_login(persona_user(request, persona))
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == landing


def test_someone_holding_two_roles_lands_on_the_first_of_them(db) -> None:
    user, _ = make_user("sue", Role.HR, mfa=True)
    user.groups.add(role_group(Role.SUPERVISOR))
    client = Client()
    client.force_login(user)
    assert client.get("/")["Location"] == "/dashboard/"


def test_a_visitor_is_sent_to_sign_in(db) -> None:
    response = Client().get("/")
    assert response["Location"] == "/accounts/login/?next=/"


def test_visitors_cannot_sign_up(db) -> None:
    response = Client().post(
        "/accounts/signup/",
        {"email": "x@example.com", "username": "x", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "Sign Up Closed" in response.text
    assert not User.objects.filter(username="x").exists()


def test_the_login_page_labels_its_fields_and_carries_a_csrf_token(db) -> None:
    html = Client().get("/accounts/login/").text
    assert '<label for="id_login">' in html
    assert '<label for="id_password">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<html lang="en">' in html


def test_signing_in_without_the_csrf_token_is_refused(db) -> None:
    make_user("eve", Role.EMPLOYEE)
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, "eve").status_code == 403
    assert not is_signed_in(client)


def test_staff_sign_in_works_with_the_cache_down(db, settings) -> None:
    # Nothing listens on port 1: the rate limiter's cache fails on every call.
    settings.CACHES = {
        "default": {
            "BACKEND": "lockerhub.cache.ResilientRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    _, secret = make_user("hana", Role.HR, mfa=True)
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    response = sign_in(client, "hana")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert is_signed_in(client)
