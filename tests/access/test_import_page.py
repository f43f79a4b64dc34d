"""The HR import page: HR only, a line per bad row, dry run by default."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from access.models import Employee
from tests.api.conftest import with_second_factor
from tests.conftest import World


def _upload(client: Client, text: str, dry_run: bool) -> object:
    data = {"kind": "employees", "file": SimpleUploadedFile("people.csv", text.encode())}
    if dry_run:
        data["dry_run"] = "on"
    return client.post("/people/import/", data)


def test_only_hr_may_open_the_import_page(world: World, supervisor, hr_officer) -> None:
    assert Client().get("/people/import/").status_code == 302  # to the login page
    client = Client()
    client.force_login(with_second_factor(supervisor))
    assert client.get("/people/import/").status_code == 403
    client.force_login(with_second_factor(hr_officer))
    assert client.get("/people/import/").status_code == 200


def test_the_page_lists_every_bad_row_and_imports_nothing(world: World, hr_officer) -> None:
    client = Client()
    client.force_login(with_second_factor(hr_officer))
    response = _upload(client, "employee_number,first_name\nE7001,Ida\n,NoNumber\nE7003,\n", False)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was imported: 2 problems" in body
    assert "Line 3:" in body
    assert "Line 4:" in body
    assert not Employee.objects.filter(employee_number="E7001").exists()


def test_a_dry_run_then_the_real_import(world: World, hr_officer) -> None:
    client = Client()
    client.force_login(with_second_factor(hr_officer))
    text = "employee_number,first_name\nE7001,Ida\n"
    assert "would create 1" in _upload(client, text, True).content.decode()
    assert not Employee.objects.filter(employee_number="E7001").exists()
    assert "created 1" in _upload(client, text, False).content.decode()
    assert Employee.objects.filter(employee_number="E7001").exists()
