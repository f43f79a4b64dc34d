"""Retiring a device (out of the fleet for good) is the facility managers' alone; supervisors
keep changing devices and sending them to maintenance.

The permissions are named here rather than read from ``lockerhub.roles``: a migration records
what changed at this point in history.
"""

from django.db import migrations

from lockerhub.grants import grant_operation

GRANTS = {
    "Facility managers": [("assets", "retire_asset")],
}


class Migration(migrations.Migration):
    dependencies = [
        ("lockerhub", "0006_hr_keeps_shifts_and_rules_fm_keeps_assets"),
        ("assets", "0005_asset_retire_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [grant_operation(GRANTS, apps=("assets",))]
