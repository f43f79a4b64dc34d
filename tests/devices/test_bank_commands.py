"""`create_bank` and `rotate_bank_token` print a bank's device token once; only its hash is kept.
`create_bank` also prints the server's public key, which the bank's worker checks snapshots with."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from access import core
from devices.models import LockerBank
from lockerhub import signing
from lockerhub.models import AuditEvent
from tests.conftest import World


def test_create_bank_makes_the_slots_and_prints_the_token_once(world: World) -> None:
    out = StringIO()
    call_command("create_bank", "BANK-C", "--site", world.site.name, "--slots", "18", stdout=out)

    lines = out.getvalue().strip().splitlines()
    token, public_key = lines[-3], lines[-1]
    bank = LockerBank.objects.get(code="BANK-C")
    # The worker is given the server's public key beside its token, to check its snapshots.
    assert public_key == signing.public_key_text()
    core.load_public_key(public_key)
    assert bank.slots.count() == 18
    assert set(bank.slots.values_list("board", flat=True)) == {0, 1}
    assert bank.check_token(token)
    assert token not in bank.token_hash
    assert out.getvalue().count(token) == 1
    assert not any(token in str(e.data) for e in AuditEvent.objects.all())


def test_create_bank_refuses_a_taken_code_and_changes_nothing(world: World) -> None:
    before = (LockerBank.objects.count(), AuditEvent.objects.count())
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_bank", "BANK-A", "--site", world.site.name, stdout=StringIO())
    with pytest.raises(CommandError, match="No site named"):
        call_command("create_bank", "BANK-Z", "--site", "Nowhere", stdout=StringIO())
    assert (LockerBank.objects.count(), AuditEvent.objects.count()) == before


def test_rotate_bank_token_prints_a_new_token_and_the_old_one_stops_working(world: World) -> None:
    first, second = StringIO(), StringIO()
    call_command("rotate_bank_token", "BANK-A", stdout=first)
    call_command("rotate_bank_token", "BANK-A", stdout=second)

    old, new = first.getvalue().strip(), second.getvalue().strip()
    bank = LockerBank.objects.get(code="BANK-A")
    assert old != new
    assert bank.check_token(new)
    assert not bank.check_token(old)
    with pytest.raises(CommandError, match="No bank"):
        call_command("rotate_bank_token", "BANK-Z", stdout=StringIO())
