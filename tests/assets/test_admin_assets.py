"""Assets registered and changed in the Django admin go through ``assets.actions``: audited
under the administrator's name, and what the actions refuse is a form error that changes
nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from access.actions import present_badge
from assets.models import Asset
from lockerhub.models import AuditEvent
from tests.admin_pages import form_errors
from tests.conftest import WEDNESDAY_10AM, World, at_admin
from tests.flows import take

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic

ADD = reverse("admin:assets_asset_add")


def change_url(asset: Asset) -> str:
    return reverse("admin:assets_asset_change", args=[asset.pk])


def asset_form(asset: Asset, **change: object) -> dict[str, object]:
    return {
        "asset_tag": asset.asset_tag,
        "serial_number": asset.serial_number,
        "asset_type": str(asset.asset_type_id),
        "status": asset.status,
        "notes": asset.notes,
        "status_reason": "",
        **change,
    }


def test_an_asset_added_in_the_admin_is_registered_under_the_admins_name(
    world: World, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        ADD,
        {
            "asset_tag": "SC-9001",
            "serial_number": "SN-9001",
            "asset_type": str(world.scanner.pk),
            "status": "maintenance",
            "notes": "",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    asset = Asset.objects.get(asset_tag="SC-9001")
    assert asset.status == Asset.Status.MAINTENANCE
    event = AuditEvent.objects.get(action="asset.registered")
    assert (event.actor, event.subject_id) == (f"user:{admin_user.pk}", str(asset.pk))


def test_a_new_asset_starts_available_or_in_maintenance(admin_client: Client, db: None) -> None:
    choices = admin_client.get(ADD).context["adminform"].form.fields["status"].choices
    assert [value for value, _ in choices] == ["available", "maintenance"]


def test_a_change_in_the_admin_audits_old_and_new(
    world: World, admin_client: Client, admin_user: User
) -> None:
    asset = Asset.objects.get(asset_tag="SC-1001")
    response = admin_client.post(change_url(asset), asset_form(asset, serial_number="SN-NEW"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="asset.updated")
    assert (event.actor, event.data) == (f"user:{admin_user.pk}", {"serial_number": ["", "SN-NEW"]})
    assert not AuditEvent.objects.filter(action="asset.retired").exists()


def test_retiring_in_the_admin_needs_a_reason_and_audits_it(
    world: World, admin_client: Client, admin_user: User
) -> None:
    asset = Asset.objects.get(asset_tag="SC-1001")
    before = AuditEvent.objects.count()

    errors = form_errors(admin_client.post(change_url(asset), asset_form(asset, status="retired")))
    assert "Say why" in errors["status_reason"][0]
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.AVAILABLE
    assert AuditEvent.objects.count() == before

    response = admin_client.post(
        change_url(asset), asset_form(asset, status="retired", status_reason="End of lease")
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.RETIRED
    event = AuditEvent.objects.get(action="asset.retired")
    assert (event.actor, event.data["reason"]) == (f"user:{admin_user.pk}", "End of lease")


def test_an_asset_being_taken_keeps_its_status(world: World, admin_client: Client) -> None:
    result = present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)
    asset = result.reservation.checkout.asset
    before = AuditEvent.objects.count()

    errors = form_errors(
        admin_client.post(
            change_url(asset), asset_form(asset, status="lost", status_reason="Not in the slot")
        )
    )

    assert "being taken" in str(errors)
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.AVAILABLE
    assert AuditEvent.objects.count() == before


def test_a_checked_out_asset_keeps_its_type(world: World, admin_client: Client) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    asset = checkout.asset
    form = asset_form(asset, asset_type=str(world.tablet.pk))
    del form["status"], form["status_reason"]  # not on the form while the device is out
    before = AuditEvent.objects.count()

    errors = form_errors(admin_client.post(change_url(asset), form))

    assert "on loan" in errors["asset_type"][0]
    assert Asset.objects.get(pk=asset.pk).asset_type == world.scanner
    assert AuditEvent.objects.count() == before


def test_only_a_facility_manager_retires_a_device_in_the_admin(
    world: World, supervisor: User, facility_manager: User
) -> None:
    asset = Asset.objects.get(asset_tag="SC-1001")
    retire = asset_form(asset, status="retired", status_reason="End of lease")

    # A supervisor changes devices and sends them to maintenance, but is not offered "Retired".
    sam = at_admin(supervisor)
    offered = dict(sam.get(change_url(asset)).context["adminform"].form.fields["status"].choices)
    assert "retired" not in offered
    assert "maintenance" in offered
    assert "status" in form_errors(sam.post(change_url(asset), retire))
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.AVAILABLE
    assert not AuditEvent.objects.filter(action="asset.retired").exists()

    response = at_admin(facility_manager).post(change_url(asset), retire)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.RETIRED
    assert AuditEvent.objects.get(action="asset.retired").actor == f"user:{facility_manager.pk}"
