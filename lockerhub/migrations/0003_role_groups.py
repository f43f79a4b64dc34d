"""Create one group per staff role and give it the role's permissions."""

from django.db import migrations


def sync_role_groups(apps, schema_editor):
    from django.db.models import Q

    from lockerhub.grants import make_permissions
    from lockerhub.roles import ROLE_GROUPS, ROLE_PERMISSIONS

    make_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, group_name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        # Today's role table: a permission a later migration declares does not exist yet here,
        # and the migration that declares it grants it.
        wanted = Q(pk__in=[])
        for app_label, codename in ROLE_PERMISSIONS[role]:
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.set(Permission.objects.filter(wanted))


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
