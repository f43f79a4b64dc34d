"""Make the audit table append-only at the database itself, so raw SQL cannot quietly edit it."""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER lockerhub_auditevent_no_update BEFORE UPDATE ON lockerhub_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
    """CREATE TRIGGER lockerhub_auditevent_no_delete BEFORE DELETE ON lockerhub_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_delete;",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION lockerhub_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER lockerhub_auditevent_append_only BEFORE UPDATE OR DELETE ON lockerhub_auditevent
       FOR EACH ROW EXECUTE FUNCTION lockerhub_audit_append_only();""",
    """CREATE TRIGGER lockerhub_auditevent_no_truncate BEFORE TRUNCATE ON lockerhub_auditevent
       FOR EACH STATEMENT EXECUTE FUNCTION lockerhub_audit_append_only();""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS lockerhub_auditevent_append_only ON lockerhub_auditevent;",
    "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_truncate ON lockerhub_auditevent;",
    "DROP FUNCTION IF EXISTS lockerhub_audit_append_only();",
]


def forwards(apps, schema_editor):
    apps.get_model("lockerhub", "AuditHead").objects.using(schema_editor.connection.alias).get_or_create(id=1)
    statements = POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE
    for sql in statements:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    statements = POSTGRES_REVERSE if schema_editor.connection.vendor == "postgresql" else SQLITE_REVERSE
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("lockerhub", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
