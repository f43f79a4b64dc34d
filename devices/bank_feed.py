"""What the server sends one connected bank: its signed access snapshot, the deltas that keep
it current, and the commands waiting for it (docs/device-protocol.md).

One :class:`BankFeed` per connection remembers what it sent. Everything it sends is read from
the database when the connection is woken (``devices.bankbus``) or when its periodic check
comes round, so the path needs PostgreSQL (or SQLite) and nothing else.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from access import core
from access.snapshot_builder import build_snapshot
from devices import actions
from devices.models import BankNotice, LockerBank
from devices.wire import MessageType
from lockerhub import signing

logger = logging.getLogger(__name__)

# Notices are read again this far back (in ids), so one whose transaction committed after a
# later one (PostgreSQL hands out ids before commit) is still seen. Applying one twice is
# harmless: a delta carries whole entries.
LOOKBACK = 1000


def next_version(bank: LockerBank) -> int:
    """The next snapshot version of ``bank``: every snapshot or delta sent gets a higher one,
    whichever server process sends it."""
    with transaction.atomic():
        LockerBank.objects.filter(pk=bank.pk).update(snapshot_version=F("snapshot_version") + 1)
        return LockerBank.objects.values_list("snapshot_version", flat=True).get(pk=bank.pk)


def last_notice_id() -> int:
    return BankNotice.objects.order_by("-id").values_list("id", flat=True).first() or 0


class BankFeed:
    """The server side of one bank connection's snapshot and commands."""

    def __init__(self, bank: LockerBank) -> None:
        self.bank = bank
        self.sent: dict[str, Any] | None = None  # the snapshot data the bank holds now
        self.last_notice = 0
        # Notices at or below this id are in the whole snapshot last built: never news.
        self.floor = 0
        self.seen: set[int] = set()
        self.commands_sent: set[str] = set()
        self.refresh_at: datetime | None = None

    @property
    def version(self) -> int | None:
        return None if self.sent is None else int(self.sent["version"])

    def _signed(self, kind: MessageType, data: dict[str, Any]) -> dict[str, Any]:
        return {"type": str(kind), **signing.sign_data(data)}

    def _refresh_due(self, now: datetime) -> datetime:
        # Well before the snapshot's validity runs out, whatever the two settings say.
        options = settings.LOCKERHUB
        every = min(options["SNAPSHOT_REFRESH_MINUTES"] * 60, options["SNAPSHOT_VALID_SECONDS"] / 3)
        return now + timedelta(seconds=every)

    def whole(self, now: datetime) -> dict[str, Any]:
        """A new whole snapshot (the next version), signed, as an ``access_snapshot`` message."""
        # Notices up to here are in what we are about to read; later ones come as deltas.
        self.floor = self.last_notice = max(self.last_notice, last_notice_id())
        self.seen.clear()
        data = build_snapshot(self.bank, now=now, version=next_version(self.bank)).to_data()
        self.sent = data
        self.refresh_at = self._refresh_due(now)
        return self._signed(MessageType.ACCESS_SNAPSHOT, data)

    def updates(self, now: datetime) -> list[dict[str, Any]]:
        """Everything new for the bank since the last call: a delta (or nothing) and commands."""
        messages = []
        if self.sent is not None:
            delta = self._delta(now)
            if delta is not None:
                messages.append(delta)
        messages.extend(self.commands(now))
        return messages

    def commands(self, now: datetime) -> list[dict[str, Any]]:
        """Unlocks the server issued for this bank that were not sent on this connection yet."""
        pending = [
            c for c in actions.pending_commands(self.bank, now) if c["id"] not in self.commands_sent
        ]
        for command in pending:
            self.commands_sent.add(command["id"])
        return [{"type": str(MessageType.COMMAND), **command} for command in pending]

    def _notices(self) -> tuple[bool, set[int], bool]:
        """(everything, holder ids, slots) changed since the notices last read."""
        rows = list(
            BankNotice.objects.filter(id__gt=max(self.floor, self.last_notice - LOOKBACK))
            .filter(Q(bank__isnull=True) | Q(bank_id=self.bank.pk))
            .values_list("id", "scope", "holder_id")
        )
        everything, holders, slots = False, set(), False
        for notice_id, scope, holder_id in rows:
            if notice_id in self.seen:
                continue
            self.seen.add(notice_id)
            self.last_notice = max(self.last_notice, notice_id)
            if scope == BankNotice.Scope.ALL:
                everything = True
            elif scope == BankNotice.Scope.HOLDER and holder_id is not None:
                holders.add(holder_id)
            else:
                slots = True
        floor = max(self.floor, self.last_notice - LOOKBACK)
        self.seen = {i for i in self.seen if i > floor}
        return everything, holders, slots

    def _delta(self, now: datetime) -> dict[str, Any] | None:
        assert self.sent is not None
        everything, holders, slots = self._notices()
        refresh = self.refresh_at is None or now >= self.refresh_at
        if everything or refresh:
            self.floor = max(self.floor, last_notice_id())
            new = build_snapshot(self.bank, now=now).to_data()
            self.refresh_at = self._refresh_due(now)
        elif holders or slots:
            new = self._merged(
                build_snapshot(self.bank, now=now, holder_ids=holders).to_data(), holders
            )
        else:
            return None
        new["version"] = self.sent["version"]
        delta = core.make_delta(self.sent, new)
        if not refresh and not any(
            part in delta for part in ("types", "badges", "holders", "slots")
        ):
            return None
        version = next_version(self.bank)
        new["version"] = delta["version"] = version
        self.sent = new
        return self._signed(MessageType.ACCESS_DELTA, delta)

    def _merged(self, partial: dict[str, Any], holders: set[int]) -> dict[str, Any]:
        """The snapshot sent, with the named holders (and their badges), the slots and the
        types replaced by what ``partial`` says now."""
        assert self.sent is not None
        merged = dict(self.sent)
        merged["holders"] = {
            k: v for k, v in self.sent["holders"].items() if int(k) not in holders
        } | partial["holders"]
        merged["badges"] = {
            k: v for k, v in self.sent["badges"].items() if v[0] not in holders
        } | partial["badges"]
        merged["slots"] = partial["slots"]
        merged["types"] = partial["types"]
        return merged
