"""Permissions granted to role groups by a data migration, and taken back when it is reversed.

A migration names the permissions it grants rather than reading ``lockerhub.roles``: it records
what changed at that point in history. It passes ``grant_operation(GRANTS, apps=...)``.
"""

from __future__ import annotations

from django.db import migrations

Grants = dict[str, list[tuple[str, str]]]


def make_permissions(registry, labels: tuple[str, ...] | None = None) -> None:
    """Create the permissions of the apps ``labels`` (all apps if None) as the migration state
    has them. Django makes permissions after all migrations ran; a migration that grants them
    needs them now."""
    from django.contrib.auth.management import create_permissions

    configs = (
        registry.get_app_configs()
        if labels is None
        else [registry.get_app_config(label) for label in labels]
    )
    for app_config in configs:
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None


def grant_operation(grants: Grants, *, apps: tuple[str, ...]) -> migrations.RunPython:
    """Give each group in ``grants`` its permissions (made first for the app labels ``apps``)."""

    def grant(registry, schema_editor) -> None:
        make_permissions(registry, apps)
        Group = registry.get_model("auth", "Group")
        Permission = registry.get_model("auth", "Permission")
        for group_name, wanted in grants.items():
            group, _ = Group.objects.get_or_create(name=group_name)
            group.permissions.add(
                *[
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                    for app_label, codename in wanted
                ]
            )

    def revoke(registry, schema_editor) -> None:
        Group = registry.get_model("auth", "Group")
        Permission = registry.get_model("auth", "Permission")
        for group in Group.objects.filter(name__in=grants):
            for app_label, codename in grants[group.name]:
                group.permissions.remove(
                    *Permission.objects.filter(content_type__app_label=app_label, codename=codename)
                )

    return migrations.RunPython(grant, revoke)
