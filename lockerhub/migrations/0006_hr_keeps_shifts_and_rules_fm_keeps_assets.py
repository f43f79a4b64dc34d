"""HR deletes shift patterns and keeps the access rules; facility managers register and change
assets.

The permissions are named here rather than read from ``lockerhub.roles``: a migration records
what changed at this point in history.
"""

from django.db import migrations

GRANTS: dict[str, list[tuple[str, str]]] = {
    "HR": [
        ("access", "delete_shift"),
        ("access", "add_accessrule"),
        ("access", "change_accessrule"),
        ("access", "delete_accessrule"),
    ],
    "Facility managers": [
        ("assets", "add_asset"),
        ("assets", "change_asset"),
    ],
}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations ran; this migration needs these now.
    for label in ("access", "assets"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, wanted in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(
            *[
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in wanted
            ]
        )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name__in=GRANTS):
        for app_label, codename in GRANTS[group.name]:
            group.permissions.remove(
                *Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("lockerhub", "0005_charge_fault_alert_slots"),
        ("access", "0003_scim_fields_and_api_keys"),
        ("assets", "0004_report_rollups_last_taken_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
