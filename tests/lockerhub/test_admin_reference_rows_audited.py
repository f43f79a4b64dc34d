"""Sites, departments, employee groups, asset types and webhook endpoints written in the Django
admin go through ``lockerhub.actions.save_row`` and ``delete_row``: audited under the name of
the staff member who saved, with only what changed as old and new values and never a secret;
a deletion others would be left without is an error message that changes nothing."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.forms.models import BaseModelForm
from django.test import Client

from access.models import AccessRule, Department, Employee, EmployeeGroup, Shift
from assets.models import AssetType
from devices.models import LockerBank, Site
from lockerhub import actions, audit
from lockerhub.models import Alert, AlertDelivery, AuditEvent, WebhookEndpoint
from tests.admin_pages import audited, form_errors, messages_of, rows_and_records, url
from tests.conftest import World, at_admin, make_employee

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic


@pytest.fixture
def hr(hr_officer: User) -> Client:
    """HR at the admin (departments and groups are theirs): staff, with the second factor."""
    return at_admin(hr_officer)


def posted(client: Client, obj: Model, **change: object) -> dict[str, object]:
    """The change page of ``obj`` as a browser posts it untouched, then ``change``."""
    form = client.get(url(obj, "change", obj.pk)).context["adminform"].form
    data: dict[str, object] = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[name] = "on"
        elif isinstance(value, list):
            data[name] = [str(v) for v in value]
        elif value not in (False, None):
            data[name] = str(value)
    data.update(change)
    return data


def everything_recorded() -> str:
    """Every audit record's data and the admin's history, as one text to search."""
    data = " ".join(str(d) for d in AuditEvent.objects.values_list("data", flat=True))
    history = " ".join(LogEntry.objects.values_list("change_message", flat=True))
    return f"{data} {history}"


snapshot = rows_and_records


# --- Adding and changing ---


def test_a_site_added_in_the_admin_is_audited_with_its_values(
    db: None, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url(Site, "add"), {"name": "North DC", "time_zone": "Europe/Paris"}
    )

    assert response.status_code == 302, form_errors(response)
    site = Site.objects.get(name="North DC")
    [(actor, subject, data)] = audited("devices.site.created")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(site.pk))
    assert data == {"name": "North DC", "time_zone": "Europe/Paris"}
    assert LogEntry.objects.get(object_id=str(site.pk)).is_addition()


def test_changing_a_department_audits_only_what_changed(
    world: World, hr: Client, hr_officer: User
) -> None:
    department = world.department

    response = hr.post(url(department, "change", department.pk), {"name": "Logistics"})

    assert response.status_code == 302, form_errors(response)
    department.refresh_from_db()
    assert department.name == "Logistics"
    [(actor, subject, data)] = audited("access.department.updated")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(department.pk))
    assert data == {"name": ["Warehouse", "Logistics"]}


def test_changing_an_asset_type_audits_only_what_changed(
    world: World, admin_client: Client
) -> None:
    scanner = world.scanner

    response = admin_client.post(
        url(scanner, "change", scanner.pk),
        posted(admin_client, scanner, max_loan_minutes="480", requires_pin="on"),
    )

    assert response.status_code == 302, form_errors(response)
    scanner.refresh_from_db()
    assert (scanner.max_loan_minutes, scanner.requires_pin) == (480, True)
    [(_, _, data)] = audited("assets.assettype.updated")
    assert data == {"max_loan_minutes": [720, 480], "requires_pin": [False, True]}


def test_group_members_changed_in_the_admin_are_audited_by_name(
    world: World, hr: Client, hr_officer: User
) -> None:
    group = EmployeeGroup.objects.create(name="Forklift certified")
    group.members.add(world.ana)
    bo = make_employee("E1002", "Bo", world.department)

    response = hr.post(
        url(group, "change", group.pk),
        posted(hr, group, members=[str(world.ana.pk), str(bo.pk)]),
    )

    assert response.status_code == 302, form_errors(response)
    assert set(group.members.all()) == {world.ana, bo}
    [(actor, subject, data)] = audited("access.employeegroup.updated")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(group.pk))
    assert data == {"members": [["Ana Test (E1001)"], ["Ana Test (E1001)", "Bo Test (E1002)"]]}


def test_a_group_added_with_members_is_audited_with_them(world: World, hr: Client) -> None:
    response = hr.post(
        url(EmployeeGroup, "add"), {"name": "Team leads", "members": [str(world.ana.pk)]}
    )

    assert response.status_code == 302, form_errors(response)
    group = EmployeeGroup.objects.get(name="Team leads")
    assert list(group.members.all()) == [world.ana]
    [(_, subject, data)] = audited("access.employeegroup.created")
    assert subject == str(group.pk)
    assert data == {"name": "Team leads", "members": ["Ana Test (E1001)"]}


@pytest.mark.parametrize(
    "make",
    [
        lambda world: world.site,
        lambda world: world.department,
        lambda world: world.scanner,
        lambda world: EmployeeGroup.objects.create(name="Leads"),
        lambda world: WebhookEndpoint.objects.create(
            name="Ops", url="https://hooks.example.com/ops", kinds=["door_forced"]
        ),
    ],
    ids=["site", "department", "asset-type", "group", "webhook-endpoint"],
)
def test_saving_an_unchanged_row_writes_and_audits_nothing(
    world: World, admin_client: Client, make: Any
) -> None:
    obj = make(world)
    model = type(obj)
    before = snapshot(model)[:-1]

    response = admin_client.post(url(obj, "change", obj.pk), posted(admin_client, obj))

    assert response.status_code == 302, form_errors(response)
    assert snapshot(model)[:-1] == before


def test_a_name_taken_is_a_form_error_and_changes_nothing(
    world: World, admin_client: Client
) -> None:
    before = snapshot(Site)

    response = admin_client.post(url(Site, "add"), {"name": "Test DC", "time_zone": "UTC"})

    assert "name" in form_errors(response)
    assert snapshot(Site) == before


def test_a_refusal_only_the_action_sees_is_an_error_message_and_changes_nothing(
    world: World, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if another change took the name after the form checked it.
    monkeypatch.setattr(BaseModelForm, "validate_unique", lambda form: None)
    north = Site.objects.create(name="North DC")
    change = url(north, "change", north.pk)
    before = snapshot(Site)

    response = admin_client.post(change, {"name": "Test DC", "time_zone": "Europe/Paris"})

    assert (response.status_code, response["Location"]) == (302, change)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "already exists" in text
    assert snapshot(Site) == before


# --- Secrets ---


def test_a_webhook_endpoint_made_in_the_admin_shows_its_secret_once_and_never_records_it(
    db: None, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url(WebhookEndpoint, "add"),
        {
            "name": "Ops",
            "url": "https://hooks.example.com/ops",
            "is_active": "on",
            "kinds": "[]",
            "min_severity": "warning",
        },
    )

    assert response.status_code == 302, form_errors(response)
    endpoint = WebhookEndpoint.objects.get(name="Ops")
    assert endpoint.secret.startswith("whsec_")
    assert any(endpoint.secret in text for _, text in messages_of(response))
    [(actor, subject, data)] = audited("lockerhub.webhookendpoint.created")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(endpoint.pk))
    assert data["secret"] == "set"
    assert (data["url"], data["min_severity"]) == ("https://hooks.example.com/ops", "warning")
    assert endpoint.secret not in everything_recorded()


def test_changing_a_webhook_endpoint_and_rotating_its_secret_never_records_a_secret(
    db: None, admin_client: Client
) -> None:
    endpoint = WebhookEndpoint.objects.create(name="Ops", url="https://hooks.example.com/ops")
    first = endpoint.secret

    response = admin_client.post(
        url(endpoint, "change", endpoint.pk),
        posted(admin_client, endpoint, url="https://hooks.example.com/v2", min_severity="critical"),
    )
    assert response.status_code == 302, form_errors(response)
    rotated = admin_client.post(
        url(WebhookEndpoint, "changelist"),
        {"action": "rotate_secret", ACTION_CHECKBOX_NAME: [str(endpoint.pk)], "index": "0"},
    )

    assert rotated.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != first
    [(_, _, data)] = audited("lockerhub.webhookendpoint.updated")
    assert data == {
        "url": ["https://hooks.example.com/ops", "https://hooks.example.com/v2"],
        "min_severity": ["info", "critical"],
    }
    assert len(audited("webhook.secret_rotated")) == 1
    recorded = everything_recorded()
    assert first not in recorded
    assert endpoint.secret not in recorded


def test_a_secret_changed_through_the_action_is_recorded_only_as_changed(db: None) -> None:
    endpoint = WebhookEndpoint.objects.create(name="Ops", url="https://hooks.example.com/ops")

    actions.save_row(endpoint, actor=audit.SYSTEM, secret="whsec_replaced-by-hand")

    endpoint.refresh_from_db()
    assert endpoint.secret == "whsec_replaced-by-hand"
    [(_, _, data)] = audited("lockerhub.webhookendpoint.updated")
    assert data == {"secret": "changed"}
    assert "whsec_" not in everything_recorded()


def test_fields_holding_secrets_or_hashes_are_told_by_name() -> None:
    for name in ("secret", "token_hash", "pin_hash", "password", "api_token"):
        assert actions.is_secret(name), name
    for name in ("name", "requires_pin", "url", "time_zone", "kinds"):
        assert not actions.is_secret(name), name


# --- Deleting ---


def test_deleting_an_unused_department_is_audited_with_its_last_values(
    world: World, admin_client: Client, admin_user: User
) -> None:
    night = Department.objects.create(name="Night crew")
    bo = make_employee("E1002", "Bo", night)

    response = admin_client.post(url(night, "delete", night.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Department.objects.filter(pk=night.pk).exists()
    bo.refresh_from_db()
    assert bo.department is None  # people stay, without a department
    [(actor, subject, data)] = audited("access.department.deleted")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(night.pk))
    assert data == {"name": "Night crew"}
    assert LogEntry.objects.get(object_id=str(night.pk)).is_deletion()


def test_deleting_an_unused_site_is_audited_with_its_last_values(
    world: World, admin_client: Client, admin_user: User
) -> None:
    north = Site.objects.create(name="North DC", time_zone="Europe/Paris")

    response = admin_client.post(url(north, "delete", north.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Site.objects.filter(pk=north.pk).exists()
    [(actor, subject, data)] = audited("devices.site.deleted")
    assert (actor, subject) == (audit.actor_for_user(admin_user), str(north.pk))
    assert data == {"name": "North DC", "time_zone": "Europe/Paris"}


def test_deleting_a_webhook_endpoint_is_audited_without_its_secret(
    db: None, admin_client: Client
) -> None:
    endpoint = WebhookEndpoint.objects.create(name="Ops", url="https://hooks.example.com/ops")

    response = admin_client.post(url(endpoint, "delete", endpoint.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    [(_, subject, data)] = audited("lockerhub.webhookendpoint.deleted")
    assert subject == str(endpoint.pk)
    assert (data["name"], data["secret"]) == ("Ops", "set")
    assert endpoint.secret not in everything_recorded()


def _delivered_to(endpoint: WebhookEndpoint) -> None:
    alert = Alert.objects.create(kind=Alert.Kind.DOOR_HELD_OPEN, dedup_key="held:1", title="t")
    AlertDelivery.objects.create(
        key=f"{alert.pk}:alert.raised:0:webhook:{endpoint.pk}",
        alert=alert,
        event="alert.raised",
        channel=AlertDelivery.Channel.WEBHOOK,
        endpoint=endpoint,
        recipient=endpoint.url,
    )


def test_a_webhook_endpoint_with_a_delivery_log_is_not_deleted_in_the_admin(
    db: None, admin_client: Client
) -> None:
    # The delivery log is history nobody deletes in the admin; the endpoint is deactivated.
    endpoint = WebhookEndpoint.objects.create(name="Ops", url="https://hooks.example.com/ops")
    _delivered_to(endpoint)
    before = snapshot(WebhookEndpoint, AlertDelivery)

    confirm = admin_client.get(url(endpoint, "delete", endpoint.pk))
    delete = admin_client.post(url(endpoint, "delete", endpoint.pk), {"post": "yes"})

    assert confirm.status_code == 200
    assert confirm.context["perms_lacking"] == {"alert delivery"}
    assert delete.status_code == 403
    assert snapshot(WebhookEndpoint, AlertDelivery) == before


def test_the_action_counts_the_rows_deleted_along_and_keeps_the_secret_out(db: None) -> None:
    endpoint = WebhookEndpoint.objects.create(name="Ops", url="https://hooks.example.com/ops")
    _delivered_to(endpoint)

    actions.delete_row(endpoint, actor=audit.SYSTEM)

    assert not AlertDelivery.objects.exists()
    [(_, _, data)] = audited("lockerhub.webhookendpoint.deleted")
    assert (data["secret"], data["cascaded"]) == ("set", {"lockerhub.alertdelivery": 1})
    assert endpoint.secret not in everything_recorded()


def _site_with_banks(world: World) -> tuple[Model, str]:
    return world.site, "2 locker banks (BANK-A, BANK-B)"


def _asset_type_with_assets(world: World) -> tuple[Model, str]:
    return world.scanner, "5 assets"


def _department_a_rule_names(world: World) -> tuple[Model, str]:
    return world.department, "1 access rule (Warehouse scanners)"


def _group_a_rule_names(world: World) -> tuple[Model, str]:
    group = EmployeeGroup.objects.create(name="Leads")
    world.rule.groups.add(group)
    return group, "1 access rule (Warehouse scanners)"


def _site_with_shifts(world: World) -> tuple[Model, str]:
    # Its shift patterns go through delete_shift, which keeps those people still work.
    north = Site.objects.create(name="North DC")
    Shift.objects.create(site=north, name="Early", start=time(5), end=time(13))
    return north, "1 shift (Early"


def _site_a_rule_names(world: World) -> tuple[Model, str]:
    # Without its one site the rule would apply everywhere.
    north = Site.objects.create(name="North DC")
    world.rule.sites.add(north)
    return north, "1 access rule (Warehouse scanners)"


KEPT = [
    _site_with_banks,
    _asset_type_with_assets,
    _department_a_rule_names,
    _group_a_rule_names,
    _site_with_shifts,
    _site_a_rule_names,
]
MODELS = (Site, LockerBank, AssetType, Department, EmployeeGroup, AccessRule, Employee, Shift)


@pytest.mark.parametrize("kept", KEPT, ids=lambda f: f.__name__.strip("_"))
def test_a_row_others_still_need_is_not_deleted_and_the_page_says_why(
    world: World, admin_client: Client, kept: Any
) -> None:
    obj, needed_by = kept(world)
    change = url(obj, "change", obj.pk)
    links = {name: list(getattr(world.rule, name).all()) for name in ("sites", "groups")}
    before = snapshot(*MODELS)

    confirm = admin_client.get(url(obj, "delete", obj.pk))
    delete = admin_client.post(url(obj, "delete", obj.pk), {"post": "yes"})

    for response in (confirm, delete):
        assert (response.status_code, response["Location"]) == (302, change)
        level, text = messages_of(response)[-1]
        assert level == "error"
        assert "cannot be deleted" in text
        assert needed_by in text
    assert snapshot(*MODELS) == before
    assert {name: list(getattr(world.rule, name).all()) for name in links} == links


def test_deleting_selected_rows_is_all_or_nothing(world: World, admin_client: Client) -> None:
    free = Department.objects.create(name="Night crew")
    before = snapshot(Department)

    response = admin_client.post(
        url(Department, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(free.pk), str(world.department.pk)],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert (level, "Warehouse cannot be deleted" in text) == ("error", True)
    assert snapshot(Department) == before


def test_deleting_selected_unused_rows_audits_each(
    world: World, admin_client: Client, admin_user: User
) -> None:
    spare = [AssetType.objects.create(code=f"spare-{i}", name=f"Spare {i}") for i in (1, 2)]

    response = admin_client.post(
        url(AssetType, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(t.pk) for t in spare],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not AssetType.objects.filter(code__startswith="spare-").exists()
    actor = audit.actor_for_user(admin_user)
    assert [(a, s, d["code"]) for a, s, d in audited("assets.assettype.deleted")] == [
        (actor, str(spare[0].pk), "spare-1"),
        (actor, str(spare[1].pk), "spare-2"),
    ]


def test_the_action_refuses_a_delete_the_database_would_refuse(world: World) -> None:
    before = snapshot(Site, LockerBank)

    with pytest.raises(ValidationError, match="2 locker banks"):
        actions.delete_row(world.site, actor=audit.SYSTEM)

    assert snapshot(Site, LockerBank) == before
