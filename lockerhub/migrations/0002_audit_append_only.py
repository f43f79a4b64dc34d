"""Make the audit table append-only at the database itself, so raw SQL cannot quietly edit it."""

from django.db import migrations

from lockerhub.dbtriggers import create_audit_triggers, drop_audit_triggers


def forwards(apps, schema_editor):
    apps.get_model("lockerhub", "AuditHead").objects.using(schema_editor.connection.alias).get_or_create(id=1)
    create_audit_triggers(schema_editor.connection)


def backwards(apps, schema_editor):
    drop_audit_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("lockerhub", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
