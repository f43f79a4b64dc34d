"""Supervisors pair and revoke the kiosk screens of their banks."""

from django.db import migrations

GROUP = "Supervisors"


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations ran; this migration needs this one now.
    app_config = apps.get_app_config("devices")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        Permission.objects.get(content_type__app_label="devices", codename="pair_kiosk")
    )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name=GROUP):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="devices", codename="pair_kiosk")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0002_kiosk"),
        ("lockerhub", "0003_role_groups"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
