"""An IT asset system keeps the fleet through the API with a facility manager's key: register,
change, send to maintenance, retire. Every write goes through ``assets.actions``, is audited
under the key, and a refused one changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from access.actions import present_badge
from access.models import ApiKey, Reason
from assets.models import Asset
from lockerhub.models import AuditEvent
from tests.api.conftest import key_client
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import take


@pytest.fixture
def fleet_key(make_key) -> tuple[APIClient, str]:
    client = key_client(make_key("facility_manager", name="IT assets"))
    return client, f"api-key:{ApiKey.objects.get(name='IT assets').pk}"


def _asset(tag: str) -> Asset:
    return Asset.objects.select_related("asset_type").get(asset_tag=tag)


def _fleet() -> list[tuple[Any, ...]]:
    return list(
        Asset.objects.order_by("pk").values_list(
            "asset_tag", "serial_number", "asset_type__code", "status", "notes"
        )
    )


def _refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("invalid", "The request has invalid fields.")
    return error["fields"]


# --- Registering ---


def test_an_asset_is_registered_by_type_code_and_the_audit_names_the_key(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    client, actor = fleet_key
    response = client.post(
        "/api/assets/",
        {"asset_tag": "SC-9001", "asset_type": "scanner", "serial_number": "SN-9001"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["asset_tag"], body["asset_type"], body["status"], body["notes"]) == (
        "SC-9001",
        "scanner",
        "available",
        "",
    )
    asset = _asset("SC-9001")
    event = AuditEvent.objects.get(action="asset.registered")
    assert (event.actor, event.subject_type, event.subject_id) == (
        actor,
        "assets.asset",
        str(asset.pk),
    )
    assert event.data == {
        "asset_tag": "SC-9001",
        "serial_number": "SN-9001",
        "asset_type": "scanner",
        "notes": "",
        "status": "available",
    }


def test_a_new_asset_cannot_be_registered_with_a_status(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    # The status is read-only: a device is lent only once it sits in a slot.
    response = fleet_key[0].post(
        "/api/assets/",
        {"asset_tag": "SC-9002", "asset_type": "scanner", "status": "checked_out"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert _asset("SC-9002").status == Asset.Status.AVAILABLE


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"asset_tag": "SC-1001", "asset_type": "scanner"}, "asset_tag", "exists already"),
        ({"asset_tag": " SC-1001 ", "asset_type": "scanner"}, "asset_tag", "exists already"),
        ({"asset_tag": "SC-9003", "asset_type": "drone"}, "asset_type", "does not exist"),
        ({"asset_tag": "SC-9003", "asset_type": 1}, "asset_type", "does not exist"),
        ({"asset_tag": "SC-9003"}, "asset_type", "required"),
        ({"asset_type": "scanner"}, "asset_tag", "required"),
        ({"asset_tag": "", "asset_type": "scanner"}, "asset_tag", "blank"),
        ({"asset_tag": "X" * 41, "asset_type": "scanner"}, "asset_tag", "no more than 40"),
    ],
)
def test_a_bad_new_asset_is_a_field_error_and_changes_nothing(
    world: World, fleet_key: tuple[APIClient, str], body: dict, field: str, message: str
) -> None:
    before = (_fleet(), AuditEvent.objects.count())
    fields = _refused(fleet_key[0].post("/api/assets/", body, format="json"))
    assert list(fields) == [field]
    assert message in str(fields[field])
    assert (_fleet(), AuditEvent.objects.count()) == before


# --- Changing ---


def test_a_patch_changes_only_what_it_names_and_the_audit_keeps_old_and_new(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    client, actor = fleet_key
    asset = _asset("SC-1001")
    response = client.patch(
        f"/api/assets/{asset.pk}/",
        {"serial_number": "SN-NEW", "notes": "Screen protector replaced"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert (response.json()["serial_number"], response.json()["notes"]) == (
        "SN-NEW",
        "Screen protector replaced",
    )
    asset.refresh_from_db()
    assert (asset.asset_tag, asset.asset_type.code, asset.status) == (
        "SC-1001",
        "scanner",
        "available",
    )
    event = AuditEvent.objects.get(action="asset.updated")
    assert event.actor == actor
    assert event.data == {
        "serial_number": ["", "SN-NEW"],
        "notes": ["", "Screen protector replaced"],
    }


def test_a_patch_that_changes_nothing_writes_no_audit(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    asset = _asset("SC-1001")
    response = fleet_key[0].patch(
        f"/api/assets/{asset.pk}/", {"asset_tag": "SC-1001"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert not AuditEvent.objects.filter(action="asset.updated").exists()


def test_a_patch_never_changes_the_status(world: World, fleet_key: tuple[APIClient, str]) -> None:
    asset = _asset("SC-1001")
    response = fleet_key[0].patch(f"/api/assets/{asset.pk}/", {"status": "retired"}, format="json")
    assert response.status_code == 200, response.content
    assert _asset("SC-1001").status == Asset.Status.AVAILABLE


def test_renaming_to_a_taken_tag_is_refused_and_changes_nothing(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    before = (_fleet(), AuditEvent.objects.count())
    asset = _asset("SC-1001")
    fields = _refused(
        fleet_key[0].patch(f"/api/assets/{asset.pk}/", {"asset_tag": "SC-1002"}, format="json")
    )
    assert "exists already" in fields["asset_tag"][0]
    assert (_fleet(), AuditEvent.objects.count()) == before


def test_a_device_on_loan_keeps_its_type_but_may_be_relabelled(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    asset = checkout.asset
    client = fleet_key[0]
    before = (_fleet(), AuditEvent.objects.count())

    fields = _refused(
        client.patch(f"/api/assets/{asset.pk}/", {"asset_type": "tablet"}, format="json")
    )
    assert "on loan" in fields["asset_type"][0]
    assert (_fleet(), AuditEvent.objects.count()) == before

    response = client.patch(f"/api/assets/{asset.pk}/", {"serial_number": "SN-1"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "checked_out"


def test_put_is_not_offered(world: World, fleet_key: tuple[APIClient, str]) -> None:
    asset = _asset("SC-1001")
    response = fleet_key[0].put(
        f"/api/assets/{asset.pk}/",
        {"asset_tag": "SC-1001", "asset_type": "scanner"},
        format="json",
    )
    assert response.status_code == 405


# --- Retiring ---


def test_a_retired_asset_is_never_lent_again_and_the_audit_keeps_why(
    world: World, fleet_key: tuple[APIClient, str], at_wednesday_10am
) -> None:
    client, actor = fleet_key
    for tag in ("SC-1001", "SC-1002", "SC-1003"):
        response = client.post(
            f"/api/assets/{_asset(tag).pk}/retire/", {"reason": "End of lease"}, format="json"
        )
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "retired"

    events = AuditEvent.objects.filter(action="asset.retired")
    assert {(e.actor, e.data["reason"], e.data["from"]) for e in events} == {
        (actor, "End of lease", "available")
    }
    assert events.count() == 3
    # Ana may take scanners, and bank A held three of them.
    assert present_badge(world.bank, world.ana_badge.uid).reason == Reason.NO_ASSET_AVAILABLE


def test_retiring_twice_changes_nothing_the_second_time(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    url = f"/api/assets/{_asset('SC-1001').pk}/retire/"
    for _ in range(2):
        response = fleet_key[0].post(url, {"reason": "Dropped"}, format="json")
        assert response.status_code == 200, response.content
    assert AuditEvent.objects.filter(action="asset.retired").count() == 1


def test_retiring_a_checked_out_asset_is_refused_and_changes_nothing(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    before = (_fleet(), AuditEvent.objects.count())

    fields = _refused(
        fleet_key[0].post(
            f"/api/assets/{checkout.asset_id}/retire/", {"reason": "Dropped"}, format="json"
        )
    )

    assert "checked out" in fields["non_field_errors"][0]
    assert (_fleet(), AuditEvent.objects.count()) == before


def test_retiring_an_asset_being_taken_is_refused(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    result = present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)
    asset = result.reservation.checkout.asset
    assert asset.status == Asset.Status.AVAILABLE  # the door has not opened yet
    before = (_fleet(), AuditEvent.objects.count())

    fields = _refused(
        fleet_key[0].post(f"/api/assets/{asset.pk}/retire/", {"reason": "Dropped"}, format="json")
    )

    assert "being taken" in fields["non_field_errors"][0]
    assert (_fleet(), AuditEvent.objects.count()) == before


@pytest.mark.parametrize(
    ("body", "message"), [({}, "required"), ({"reason": "  "}, "blank"), ({"reason": "x"}, "3")]
)
def test_retiring_needs_a_reason(
    world: World, fleet_key: tuple[APIClient, str], body: dict, message: str
) -> None:
    asset = _asset("SC-1001")
    fields = _refused(fleet_key[0].post(f"/api/assets/{asset.pk}/retire/", body, format="json"))
    assert message in str(fields["reason"])
    assert _asset("SC-1001").status == Asset.Status.AVAILABLE


# --- Maintenance ---


def test_maintenance_takes_a_device_out_of_circulation_and_back(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    client, actor = fleet_key
    url = f"/api/assets/{_asset('SC-1001').pk}/maintenance/"

    response = client.post(url, {"in_maintenance": True, "reason": "Battery swells"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "maintenance"

    response = client.post(url, {"in_maintenance": False}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "available"

    assert list(
        AuditEvent.objects.filter(action__startswith="asset.")
        .order_by("seq")
        .values_list("action", "actor", "data__reason")
    ) == [
        ("asset.maintenance", actor, "Battery swells"),
        ("asset.back_in_service", actor, ""),
    ]


def test_maintenance_needs_a_reason(world: World, fleet_key: tuple[APIClient, str]) -> None:
    asset = _asset("SC-1001")
    fields = _refused(
        fleet_key[0].post(
            f"/api/assets/{asset.pk}/maintenance/", {"in_maintenance": True}, format="json"
        )
    )
    assert "Say why" in fields["reason"][0]
    assert _asset("SC-1001").status == Asset.Status.AVAILABLE


def test_a_retired_asset_does_not_come_back_through_maintenance(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    client = fleet_key[0]
    asset = _asset("SC-1001")
    client.post(f"/api/assets/{asset.pk}/retire/", {"reason": "End of lease"}, format="json")
    before = (_fleet(), AuditEvent.objects.count())

    fields = _refused(
        client.post(
            f"/api/assets/{asset.pk}/maintenance/", {"in_maintenance": False}, format="json"
        )
    )

    assert "retired, not in maintenance" in fields["non_field_errors"][0]
    assert (_fleet(), AuditEvent.objects.count()) == before


def test_a_checked_out_asset_does_not_go_to_maintenance(
    world: World, fleet_key: tuple[APIClient, str]
) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    before = (_fleet(), AuditEvent.objects.count())

    _refused(
        fleet_key[0].post(
            f"/api/assets/{checkout.asset_id}/maintenance/",
            {"in_maintenance": True, "reason": "Battery swells"},
            format="json",
        )
    )

    assert (_fleet(), AuditEvent.objects.count()) == before
