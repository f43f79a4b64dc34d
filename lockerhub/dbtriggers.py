"""Database triggers that keep the audit table append-only, per database vendor."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

CREATE = {
    "sqlite": [
        """CREATE TRIGGER IF NOT EXISTS lockerhub_auditevent_no_update BEFORE UPDATE ON lockerhub_auditevent
           BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
        """CREATE TRIGGER IF NOT EXISTS lockerhub_auditevent_no_delete BEFORE DELETE ON lockerhub_auditevent
           BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
    ],
    "postgresql": [
        """CREATE OR REPLACE FUNCTION lockerhub_audit_append_only() RETURNS trigger AS $$
           BEGIN RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql;""",
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_append_only ON lockerhub_auditevent;",
        """CREATE TRIGGER lockerhub_auditevent_append_only BEFORE UPDATE OR DELETE ON lockerhub_auditevent
           FOR EACH ROW EXECUTE FUNCTION lockerhub_audit_append_only();""",
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_truncate ON lockerhub_auditevent;",
        """CREATE TRIGGER lockerhub_auditevent_no_truncate BEFORE TRUNCATE ON lockerhub_auditevent
           FOR EACH STATEMENT EXECUTE FUNCTION lockerhub_audit_append_only();""",
    ],
}
DROP = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_update;",
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_delete;",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_append_only ON lockerhub_auditevent;",
        "DROP TRIGGER IF EXISTS lockerhub_auditevent_no_truncate ON lockerhub_auditevent;",
        "DROP FUNCTION IF EXISTS lockerhub_audit_append_only();",
    ],
}


def _run(connection: BaseDatabaseWrapper, statements: dict[str, list[str]]) -> None:
    if connection.vendor not in statements:
        raise NotImplementedError(f"no append-only triggers for {connection.vendor}")
    with connection.cursor() as cursor:
        for sql in statements[connection.vendor]:
            cursor.execute(sql)


def create_audit_triggers(connection: BaseDatabaseWrapper) -> None:
    _run(connection, CREATE)


def drop_audit_triggers(connection: BaseDatabaseWrapper) -> None:
    """Only for tearing down test databases; production never drops them."""
    _run(connection, DROP)
