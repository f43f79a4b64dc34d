"""Create one group per staff role and give it the role's permissions."""

from django.db import migrations


def sync_role_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from lockerhub.roles import ROLE_GROUPS, ROLE_PERMISSIONS

    # Permissions are normally made after all migrations ran; this migration needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, group_name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        wanted = [
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in ROLE_PERMISSIONS[role]
        ]
        group.permissions.set(wanted)


class Migration(migrations.Migration):
    dependencies = [
        ("lockerhub", "0002_audit_append_only"),
        ("access", "0002_initial"),
        ("assets", "0002_initial"),
        ("devices", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(sync_role_groups, migrations.RunPython.noop)]
