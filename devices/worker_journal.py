"""The bank worker's journal: its durable memory, one small SQLite file next to the bank.

It holds the worker id (made once, when the file is created), the next event sequence number,
every event not yet acknowledged by the server (in ``seq`` order), the commands already
executed with their results, the last ``config`` the server sent, the signed access snapshot
with the deltas applied to it (as the exact text the server signed), and the worker's local
state: the holds under way and the local notes of takes and returns the server has not
confirmed yet. No Django here: the worker runs without the project's database or settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.wire import COMMAND_STATUSES, MessageType

# Results of executed commands are kept this long after the command expired, so a late
# redelivery is answered with its original result instead of "expired".
COMMAND_MEMORY_SECONDS = 24 * 3600.0

# Kinds of rows in the access table.
ACCESS_SNAPSHOT = "snapshot"
ACCESS_DELTA = "delta"
LOCAL_PARTS = ("holds", "notes")  # the worker's local state, each part stored on its own


def utc_now() -> datetime:
    """The worker's clock, in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(frozen=True)
class CommandRecord:
    """What the journal remembers of one command id."""

    id: str
    status: str  # "started" while the unlock runs, then one of COMMAND_STATUSES
    detail: str


@dataclass(frozen=True)
class SignedEntry:
    """A signed access message as stored: ``kind`` is ``snapshot`` or ``delta``."""

    kind: str
    data: str
    sig: str

    def as_message(self) -> dict[str, str]:
        kind = (
            MessageType.ACCESS_SNAPSHOT
            if self.kind == ACCESS_SNAPSHOT
            else MessageType.ACCESS_DELTA
        )
        return {"type": str(kind), "data": self.data, "sig": self.sig}


class Journal:
    """The worker's durable memory; see the module docstring.

    :meth:`append` has committed the event to disk (``synchronous=FULL``) when it returns, so
    an event is never sent before it is safe. One connection is shared by all threads behind
    :attr:`lock` (reentrant: a caller may hold it across :attr:`next_seq` and an append to know
    the seqs the append will give). Unacknowledged events are mirrored in memory so that the
    sender reads them without a query; the badge path (decide, append, unlock) then costs one
    commit and no read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10
        )
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL may lose the last commits on power loss; FULL makes each commit durable.
        db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                " detail TEXT NOT NULL, keep_until REAL NOT NULL)"
            )
            # The signed access snapshot, then the deltas applied to it, in order.
            db.execute(
                "CREATE TABLE IF NOT EXISTS access (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                " data TEXT NOT NULL, sig TEXT NOT NULL)"
            )
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('worker_id', ?)",
                (str(uuid.uuid4()),),
            )
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', '1')")
            self.worker_id: str = self._meta("worker_id")
            self._next_seq = int(self._meta("next_seq"))
            self._pending: dict[int, str] = dict(
                db.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
            )
        self.prune_commands()

    def __repr__(self) -> str:
        return f"<Journal {self.path} worker_id={self.worker_id}>"

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"journal {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _insert_events(
        self, db: sqlite3.Connection, events: Iterable[Mapping[str, Any]]
    ) -> dict[int, str]:
        added: dict[int, str] = {}
        seq = self._next_seq
        for event in events:
            if not isinstance(event.get("type"), str):
                raise ValueError(f"an event needs a type: {event!r}")
            body = dict(event)
            body["seq"] = seq
            body.setdefault("at", iso(utc_now()))
            text = json.dumps(body, separators=(",", ":"))
            db.execute("INSERT INTO events (seq, body) VALUES (?, ?)", (seq, text))
            added[seq] = text
            seq += 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq),))
        return added

    def _commit_added(self, added: dict[int, str]) -> None:
        # Only called after COMMIT: the mirror must never show an event that is not on disk.
        self._pending.update(added)
        if added:
            self._next_seq = max(added) + 1

    # -- events ----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest sequence number ever given out (0 for a new journal)."""
        with self.lock:
            return self._next_seq - 1

    @property
    def next_seq(self) -> int:
        """The seq the next appended event gets (hold :attr:`lock` to rely on it)."""
        with self.lock:
            return self._next_seq

    def append(self, event: Mapping[str, Any], *, local: Mapping[str, Any] | None = None) -> int:
        """Give ``event`` the next seq (and ``at`` if missing), store it durably, return seq."""
        return self.append_many([event], local=local)[0]

    def append_many(
        self, events: Sequence[Mapping[str, Any]], *, local: Mapping[str, Any] | None = None
    ) -> list[int]:
        """Like :meth:`append` for several events, in one commit; returns their seqs in order.

        With ``local``, the parts of the worker's local state it names (``holds``, ``notes``)
        are replaced by it in the same commit, so what the worker remembers never disagrees
        with what it reported. A tap changes only the holds, so it stores only them.
        """
        if not events and local is None:
            return []
        with self.lock:
            with self._transaction() as db:
                added = self._insert_events(db, events)
                if local is not None:
                    self._set_local(db, local)
            self._commit_added(added)
            return list(added)

    def ack(self, seq: int) -> int:
        """Forget every event with a seq up to ``seq``; returns how many were removed."""
        with self.lock:
            gone = [s for s in self._pending if s <= seq]
            if not gone:
                return 0
            with self._transaction() as db:
                db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            for s in gone:
                del self._pending[s]
            return len(gone)

    def is_pending(self, seq: int) -> bool:
        """Whether event ``seq`` is still waiting for the server's acknowledgement."""
        with self.lock:
            return seq in self._pending

    def pending(self) -> list[dict[str, Any]]:
        """The unacknowledged events, oldest first."""
        return [json.loads(text) for _, text in self.pending_messages()]

    def pending_messages(self, after: int = 0) -> list[tuple[int, str]]:
        """(seq, JSON text) of the unacknowledged events with a seq above ``after``, in order."""
        with self.lock:
            return sorted((s, t) for s, t in self._pending.items() if s > after)

    def advance_seq(self, last_used: int) -> bool:
        """Make sure the next seq is above ``last_used``; True if it had to move.

        The server remembers the highest seq it applied for this worker id. If the journal is
        older than that (restored from a backup, say), new events would reuse seqs the server
        takes for duplicates and silently drops.
        """
        with self.lock:
            if last_used < self._next_seq:
                return False
            with self._transaction() as db:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(last_used + 1),)
                )
            self._next_seq = last_used + 1
            return True

    # -- commands --------------------------------------------------------------------------

    def command(self, command_id: str) -> CommandRecord | None:
        """What is known of ``command_id``, or None if it was never seen (or long forgotten)."""
        with self.lock:
            row = self._conn.execute(
                "SELECT status, detail FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        return None if row is None else CommandRecord(command_id, row[0], row[1])

    def claim_command(self, command_id: str, expires_at: datetime) -> CommandRecord | None:
        """Record that ``command_id`` is about to run; None if the caller may run it.

        Otherwise returns what is already known of it and the caller must not run it. The
        claim is durable before the unlock, so a crash in the middle never causes a second
        unlock: the command then stays "started" and is reported as failed.
        """
        keep_until = max(time.time(), expires_at.timestamp()) + COMMAND_MEMORY_SECONDS
        with self.lock:
            existing = self.command(command_id)
            if existing is not None:
                return existing
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO commands (id, status, detail, keep_until) VALUES (?, 'started', '', ?)",
                    (command_id, keep_until),
                )
            return None

    def finish_command(
        self, command_id: str, status: str, detail: str, *, expires_at: datetime | None = None
    ) -> int:
        """Store the result of ``command_id`` and journal its ``command_result``; returns seq.

        Both happen in one commit, so a result is never remembered without being reported.
        """
        if status not in COMMAND_STATUSES:
            raise ValueError(f"unknown command status {status!r}")
        expires = expires_at.timestamp() if expires_at is not None else time.time()
        keep_until = max(time.time(), expires) + COMMAND_MEMORY_SECONDS
        event = {
            "type": str(MessageType.COMMAND_RESULT),
            "id": command_id,
            "status": status,
            "detail": detail,
        }
        with self.lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO commands (id, status, detail, keep_until) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                    " detail = excluded.detail, keep_until = MAX(keep_until, excluded.keep_until)",
                    (command_id, status, detail, keep_until),
                )
                added = self._insert_events(db, [event])
            self._commit_added(added)
            return next(iter(added))

    def prune_commands(self, now: float | None = None) -> int:
        """Forget commands whose memory period is over; returns how many."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            return db.execute("DELETE FROM commands WHERE keep_until < ?", (now,)).rowcount

    # -- the server's configuration ----------------------------------------------------------

    def config(self) -> dict[str, Any] | None:
        """The last ``config`` message the server sent (None before the first one)."""
        with self.lock:
            text = self._meta("config")
        return None if text is None else json.loads(text)

    def save_config(self, config: Mapping[str, Any]) -> None:
        """Keep ``config`` so that the next start polls the doors before the server answers."""
        text = json.dumps(config, separators=(",", ":"), sort_keys=True)
        with self._transaction() as db:
            self._set_meta(db, "config", text)

    # -- the signed access snapshot ------------------------------------------------------------

    def access_entries(self) -> list[SignedEntry]:
        """The stored snapshot and the deltas applied to it, in order (empty without one)."""
        with self.lock:
            rows = self._conn.execute("SELECT kind, data, sig FROM access ORDER BY id").fetchall()
        return [SignedEntry(*row) for row in rows]

    def store_access(
        self, kind: str, data: str, sig: str, *, local: Mapping[str, Any] | None = None
    ) -> None:
        """Store a signed snapshot (replacing everything stored) or a delta (after the rest).

        ``data`` and ``sig`` are kept exactly as received, so they can be verified again.
        """
        if kind not in (ACCESS_SNAPSHOT, ACCESS_DELTA):
            raise ValueError(f"unknown access entry kind {kind!r}")
        with self._transaction() as db:
            if kind == ACCESS_SNAPSHOT:
                db.execute("DELETE FROM access")
            db.execute("INSERT INTO access (kind, data, sig) VALUES (?, ?, ?)", (kind, data, sig))
            if local is not None:
                self._set_local(db, local)

    # -- local state -----------------------------------------------------------------------------

    def _set_local(self, db: sqlite3.Connection, local: Mapping[str, Any]) -> None:
        for part, value in local.items():
            if part not in LOCAL_PARTS:
                raise ValueError(f"unknown part of the local state {part!r}")
            self._set_meta(db, f"local.{part}", json.dumps(value, separators=(",", ":")))

    def local_state(self) -> dict[str, Any]:
        """The worker's local state as last stored, by part (``{}`` for a new journal)."""
        with self.lock:
            texts = {part: self._meta(f"local.{part}") for part in LOCAL_PARTS}
        return {part: json.loads(text) for part, text in texts.items() if text is not None}

    def close(self) -> None:
        """Close the file. Calling it more than once is harmless."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
