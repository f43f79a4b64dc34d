"""The benchmark's world, built in its own database by the real actions.

Run by ``bench/tap_to_unlock.py`` as a child process with the benchmark's ``DATABASE_URL``
(the benchmark itself never loads Django, so it can run inside another Django process such as
the test suite)::

    DATABASE_URL=... python -m bench.tap_world --banks 50 --employees 10 --out world.json

One site; per bank 12 charging slots, each holding a charged scanner; per bank a few
employees with an active badge; one access rule for everyone, without shifts and with a limit
high enough that no tap is refused for reasons outside the path being measured. The JSON
written to ``--out`` lists each bank's code, device token, slots and badge UIDs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

SLOTS_PER_BANK = 12
SITE_NAME = "Benchmark DC"


def bank_code(index: int) -> str:
    return f"BENCH-{index + 1:03d}"


def badge_uid(bank_index: int, employee_index: int) -> str:
    """A 6-byte UID unique to one employee of one bank."""
    return f"0BE0{bank_index:04X}{employee_index:04X}"


def build_world(banks: int, employees_per_bank: int) -> dict[str, Any]:
    """Create the benchmark's data and describe it (codes, tokens, slots, UIDs)."""
    from django.db import transaction
    from django.utils import timezone

    from access.actions import issue_badge
    from access.models import AccessRule, Department, Employee
    from assets.models import Asset, AssetType
    from devices.actions import create_bank
    from devices.models import Site, Slot
    from lockerhub.audit import SYSTEM

    now = timezone.now()
    world: dict[str, Any] = {"banks": []}
    with transaction.atomic():
        site = Site.objects.create(name=SITE_NAME, time_zone="UTC")
        scanner = AssetType.objects.create(code="scanner", name="Scanner", max_loan_minutes=12 * 60)
        department = Department.objects.create(name="Benchmark")
        rule = AccessRule.objects.create(
            name="Benchmark scanners", require_shift=False, max_concurrent=1000
        )
        rule.departments.add(department)
        rule.asset_types.add(scanner)
        for b in range(banks):
            code = bank_code(b)
            bank, token = create_bank(site, code, slots=SLOTS_PER_BANK, actor=SYSTEM, now=now)
            slots = list(bank.slots.order_by("number"))
            assets = Asset.objects.bulk_create(
                Asset(asset_tag=f"SC-{b + 1:03d}-{s.number:02d}", asset_type=scanner) for s in slots
            )
            for slot, asset in zip(slots, assets, strict=True):
                slot.asset = asset
                slot.present = True
                slot.charge_state = Slot.ChargeState.CHARGED
                slot.charge_state_since = now - timedelta(minutes=slot.number)
            Slot.objects.bulk_update(
                slots, ["asset", "present", "charge_state", "charge_state_since"]
            )
            uids = []
            for e in range(employees_per_bank):
                employee = Employee.objects.create(
                    employee_number=f"B{b + 1:03d}-{e + 1:03d}",
                    first_name=f"Tapper{e + 1}",
                    last_name=code,
                    department=department,
                    home_site=site,
                )
                badge = issue_badge(
                    employee,
                    badge_uid(b, e),
                    actor=SYSTEM,
                    valid_from=now - timedelta(days=1),
                    now=now,
                )
                uids.append(badge.uid)
            world["banks"].append(
                {
                    "code": code,
                    "token": token,
                    "slots": [[s.number, s.board, s.lock_index, True] for s in slots],
                    "uids": uids,
                }
            )
    return world


def main(argv: Sequence[str] | None = None) -> int:
    """Build the world in ``DATABASE_URL`` and write its description to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.tap_world")
    parser.add_argument("--banks", type=int, required=True)
    parser.add_argument("--employees", type=int, required=True, help="employees per bank")
    parser.add_argument("--out", required=True, help="JSON file to write (holds device tokens)")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        parser.error("DATABASE_URL must name the benchmark's database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    import django

    django.setup()
    world = build_world(args.banks, args.employees)
    out = Path(args.out)
    # Device tokens inside: readable by this user only.
    out.touch(mode=0o600)
    out.write_text(json.dumps(world))
    return 0


if __name__ == "__main__":
    sys.exit(main())
