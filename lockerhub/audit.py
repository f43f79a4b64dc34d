"""Writing and verifying the hash-chained audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models, transaction
from django.utils import timezone

from lockerhub.models import GENESIS_HASH, AuditEvent, AuditHead

logger = logging.getLogger(__name__)

SYSTEM = "system"


def actor_for_user(user: AbstractBaseUser) -> str:
    return f"user:{user.pk}"


def actor_for_bank(code: str) -> str:
    return f"bank:{code}"


def caller(
    user: AbstractBaseUser | AnonymousUser, actor: str | None = None
) -> tuple[AbstractBaseUser | None, str]:
    """The database user to store in a ``*_by`` column, and the actor to audit.

    An API key is no database user: the row names nobody and the audit log names the key, so
    whoever calls on a key's behalf passes ``actor`` (``lockerhub.rest.actor_for_request``).
    """
    stored = user if isinstance(user, AbstractBaseUser) else None
    if actor is None:
        if stored is None:
            raise TypeError("A caller that is not a database user needs an explicit actor.")
        actor = actor_for_user(stored)
    return stored, actor


def record(
    action: str,
    *,
    actor: str,
    subject: models.Model | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain. Must run inside the caller's transaction.

    The chain's head row is locked here, which serialises appends; callers record last so
    the lock is held only for the tail of their transaction.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record() must run inside the action's transaction")
    event = AuditEvent(
        at=at or timezone.now(),
        actor=actor,
        action=action,
        subject_type=subject._meta.label_lower if subject is not None else "",
        subject_id=str(subject.pk) if subject is not None else "",
        data=_jsonable(data or {}),
    )
    # Three plain statements, not the ORM: every take and return appends a few records on the
    # tap path, and building these queries cost more CPU than running them (bench/take_cost.py).
    with connection.cursor() as cursor:
        locks = connection.features.has_select_for_update
        cursor.execute(_HEAD_SQL + (" FOR UPDATE" if locks else ""))
        row = cursor.fetchone()
        if row is None:  # a database created without the migration's head row
            head = AuditHead.objects.create(id=1)
            row = (head.seq, head.hash)
        event.seq, event.prev_hash = row[0] + 1, row[1]
        event.hash = event.compute_hash()
        values = [
            field.get_db_prep_save(getattr(event, field.attname), connection)
            for field in _INSERTED_FIELDS
        ]
        if connection.features.can_return_columns_from_insert:
            cursor.execute(f'{_INSERT_SQL} RETURNING "id"', values)
            event.pk = cursor.fetchone()[0]
        else:
            cursor.execute(_INSERT_SQL, values)
            event.pk = cursor.lastrowid
        cursor.execute(_UPDATE_HEAD_SQL, [event.seq, event.hash])
    event._state.adding = False
    event._state.db = connection.alias
    # Every audited change that a decision at a bank reads reaches the banks' snapshots from
    # here, in the same transaction: no action can forget to tell them.
    from devices import bankbus

    bankbus.audited(action, subject)
    return event


# Plain SQL that PostgreSQL and SQLite both speak, its columns named once, from the model.
_INSERTED_FIELDS = [
    AuditEvent._meta.get_field(name)
    for name in (
        "seq", "at", "actor", "action", "subject_type", "subject_id", "data", "prev_hash", "hash"
    )
]  # fmt: skip
_INSERT_SQL = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - names from the model
    f'"{AuditEvent._meta.db_table}"',
    ", ".join(f'"{field.column}"' for field in _INSERTED_FIELDS),
    ", ".join(["%s"] * len(_INSERTED_FIELDS)),
)
# SQLite has no FOR UPDATE: its IMMEDIATE transactions already hold the write lock.
_HEAD_SQL = 'SELECT "seq", "hash" FROM "lockerhub_audithead" WHERE "id" = 1'
_UPDATE_HEAD_SQL = 'UPDATE "lockerhub_audithead" SET "seq" = %s, "hash" = %s WHERE "id" = 1'


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    problem: str


def verify_chain(chunk_size: int = 5000) -> Iterator[ChainBreak]:
    """Yield every broken link, first one first. An intact chain yields nothing."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    last_seq = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            yield ChainBreak(
                event.seq, f"sequence jumps from {expected_seq - 1} to {event.seq} (rows missing)"
            )
        if event.prev_hash != expected_prev:
            yield ChainBreak(event.seq, "prev_hash does not match the previous row's hash")
        if event.compute_hash() != event.hash:
            yield ChainBreak(
                event.seq, "row content does not match its hash (edited after writing)"
            )
        expected_prev = event.hash
        expected_seq = event.seq + 1
        last_seq = event.seq
    head = AuditHead.objects.filter(id=1).first()
    if head is not None and (head.seq != last_seq or (last_seq and head.hash != expected_prev)):
        yield ChainBreak(
            last_seq + 1,
            f"the chain ends at #{last_seq} but its head says #{head.seq} (rows removed at the end)",
        )
