"""A fixed history around the Europe/Berlin spring-forward night, 2026-03-29, with its answers.

Clocks jump from 02:00 CET (UTC+1) to 03:00 CEST (UTC+2), so Sunday the 29th is 23 hours long.
Times below are Berlin wall-clock; "=" gives UTC. Banks and assets come from the ``world``
fixture: BANK-A doors 1-3 hold scanners SC-1001..1003, door 4 tablet TB-2001 (6 doors);
BANK-B doors 1-2 hold scanners SC-2001..2002 (4 doors).

    loan  asset    who  from     taken                    returned                 due
    c1    SC-1001  Ana  A door 1 Sat 23:30 CET (22:30Z)   Sun 03:30 CEST (01:30Z)  Sun 03:00 CEST (01:00Z)
    c2    SC-1002  Ben  A door 2 Sat 10:00 CET (09:00Z)   Sat 12:00 CET (11:00Z)   Sat 14:00 CET
    c3    SC-1003  Ben  A door 3 Sun 01:15 CET (00:15Z)   Sun 04:15 CEST (02:15Z)  Sun 05:00 CEST (03:00Z)
    c4    TB-2001  Cai  A door 4 Sun 03:10 CEST (01:10Z)  Sun 03:40 CEST (01:40Z)  Sun 06:00 CEST
    c5    SC-2001  Ana  B door 1 Sun 10:00 CEST (08:00Z)  Sun 18:00 CEST (16:00Z)  Sun 14:30 CEST (12:30Z)
    c6    SC-1001  Ana  A door 1 Mon 09:00 CEST (07:00Z)  still out                Mon 14:30 CEST
    c7    SC-1002  Ben  A door 2 Mon 08:00 CEST (06:00Z)  Mon 09:30 CEST (07:30Z)  Mon 14:30 CEST
    plus a lapsed and a cancelled reservation at A door 3 on Sunday (never taken: not counted).

"Now" is Monday 30 March 12:00 CEST (10:00Z). The period is Sat 28 to Mon 30: 24 + 23 + 24 =
71 hours = 255,600 seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client

from access.models import AccessEvent, Employee
from assets.models import Asset, Checkout
from assets.reports import ReportFilter
from assets.rollups import refresh_report_rollups
from lockerhub.models import Alert
from tests.conftest import World, make_employee

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
NOW = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)  # Mon 12:00 CEST
SATURDAY, SUNDAY, MONDAY = date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)


def z(*args: int) -> datetime:
    """A UTC instant: the fixture states every time in UTC to leave no doubt."""
    return datetime(*args, tzinfo=UTC)


def sign_in(client: Client, user: User) -> Client:
    """Sign ``user`` in with an authenticator app, as staff accounts must have one."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    if not Authenticator.objects.filter(user=user).exists():
        TOTP.activate(user, generate_totp_secret())
    client.force_login(user)
    return client


@dataclass
class History:
    world: World
    ben: Employee
    cai: Employee
    period: ReportFilter

    def filter(self, **kwargs) -> ReportFilter:
        return ReportFilter(**{**self.period.__dict__, **kwargs})


@pytest.fixture
def history(world: World, time_machine) -> History:
    time_machine.move_to(NOW, tick=False)
    ben = make_employee("E1002", "Ben", world.department, site=world.site)
    cai = make_employee("E1003", "Cai", world.department, site=world.site)
    asset = {a.asset_tag: a for a in Asset.objects.all()}
    a, b = world.bank, world.other_bank
    done, out = Checkout.Status.RETURNED, Checkout.Status.ACTIVE

    def loan(tag, who, slot, taken, returned, due, status=done):
        Checkout.objects.create(
            asset=asset[tag],
            employee=who,
            slot_out=slot,
            slot_back=slot if returned else None,
            status=status,
            reserved_at=taken,
            taken_at=taken,
            returned_at=returned,
            due_at=due,
        )

    ana = world.ana
    loan(
        "SC-1001",
        ana,
        world.slot(1),
        z(2026, 3, 28, 22, 30),
        z(2026, 3, 29, 1, 30),
        z(2026, 3, 29, 1, 0),
    )
    loan(
        "SC-1002",
        ben,
        world.slot(2),
        z(2026, 3, 28, 9, 0),
        z(2026, 3, 28, 11, 0),
        z(2026, 3, 28, 13, 0),
    )
    loan(
        "SC-1003",
        ben,
        world.slot(3),
        z(2026, 3, 29, 0, 15),
        z(2026, 3, 29, 2, 15),
        z(2026, 3, 29, 3, 0),
    )
    loan(
        "TB-2001",
        cai,
        world.slot(4),
        z(2026, 3, 29, 1, 10),
        z(2026, 3, 29, 1, 40),
        z(2026, 3, 29, 4, 0),
    )
    loan(
        "SC-2001",
        ana,
        world.slot(1, b),
        z(2026, 3, 29, 8, 0),
        z(2026, 3, 29, 16, 0),
        z(2026, 3, 29, 12, 30),
    )
    loan(
        "SC-1002",
        ben,
        world.slot(2),
        z(2026, 3, 30, 6, 0),
        z(2026, 3, 30, 7, 30),
        z(2026, 3, 30, 12, 30),
    )
    loan(
        "SC-1001",
        ana,
        world.slot(1),
        z(2026, 3, 30, 7, 0),
        None,
        z(2026, 3, 30, 12, 30),
        status=out,
    )
    # SC-1001 is out now: its door is empty and it still belongs to BANK-A.
    slot = world.slot(1)
    slot.asset = None
    slot.present = False
    slot.save()
    Asset.objects.filter(asset_tag="SC-1001").update(status=Asset.Status.CHECKED_OUT)
    for status in (Checkout.Status.LAPSED, Checkout.Status.CANCELLED):
        Checkout.objects.create(
            asset=asset["SC-1003"],
            employee=cai,
            slot_out=world.slot(3),
            status=status,
            reserved_at=z(2026, 3, 29, 9, 0),
        )

    def tap(bank, at, reason, granted=False):
        AccessEvent.objects.create(
            bank=bank, at=at, uid="04AABBCCDD", granted=granted, reason=reason
        )

    tap(a, z(2026, 3, 28, 22, 50), "outside_shift")  # Sat 23:50 CET
    tap(a, z(2026, 3, 27, 23, 30), "badge_unknown")  # Sat 00:30 CET (Friday in UTC): in
    tap(a, z(2026, 3, 30, 22, 30), "badge_unknown")  # Tue 00:30 CEST (Monday in UTC): out
    tap(b, z(2026, 3, 30, 8, 0), "outside_shift")  # Mon 10:00 CEST
    tap(a, z(2026, 3, 28, 9, 0), "granted_take", granted=True)
    tap(a, z(2026, 3, 30, 6, 0), "granted_take", granted=True)

    def fault(bank, door, at, resolved=None, key=None):
        # The report reads the door from Alert.slot; the key's format is the rule's business.
        Alert.objects.create(
            kind=Alert.Kind.CHARGE_FAULT,
            dedup_key=key or f"charge-fault:{bank.code}:{door}",
            title=f"Charge fault at {bank.code} door {door}",
            bank=bank,
            slot=world.slot(door, bank),
            site=bank.site,
            opened_at=at,
            resolved_at=resolved,
        )

    fault(a, 3, z(2026, 3, 29, 3, 0), resolved=z(2026, 3, 29, 4, 0))  # Sun 05:00 CEST
    # Mon 11:00 CEST, still open; a key whose last part is not the door number.
    fault(a, 3, z(2026, 3, 30, 9, 0), key="charge-stuck:BANK-A:3:2026-03-30T09:00Z")
    fault(a, 1, z(2026, 3, 27, 23, 15), resolved=z(2026, 3, 28, 1, 0))  # Sat 00:15 CET: in
    fault(b, 2, z(2026, 3, 30, 22, 30))  # Tue 00:30 CEST: out
    Alert.objects.create(
        kind=Alert.Kind.DOOR_FORCED,
        dedup_key="door-forced:x",
        title="Forced",
        bank=a,
        opened_at=z(2026, 3, 29, 9, 0),
    )

    refresh_report_rollups(now=NOW)
    return History(world, ben, cai, ReportFilter(start=SATURDAY, end=MONDAY))
