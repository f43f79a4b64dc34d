"""HR deletes shift patterns and keeps the access rules; facility managers register and change
assets.

The permissions are named here rather than read from ``lockerhub.roles``: a migration records
what changed at this point in history.
"""

from django.db import migrations

from lockerhub.grants import grant_operation

GRANTS = {
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


class Migration(migrations.Migration):
    dependencies = [
        ("lockerhub", "0005_charge_fault_alert_slots"),
        ("access", "0003_scim_fields_and_api_keys"),
        ("assets", "0004_report_rollups_last_taken_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [grant_operation(GRANTS, apps=("access", "assets"))]
