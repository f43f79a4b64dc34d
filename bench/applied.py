"""What the server applied of the banks' events, for the benchmarks' exactly-once checks.

Run by ``bench/tap_to_unlock.py`` (after an outage run) as a child process with the
benchmark's ``DATABASE_URL``; prints JSON on standard output::

    {"banks": {"BENCH-001": {"worker_id": "…", "last_event_seq": 812, "access_events": 160}, …},
     "duplicates": 0, "failed_events": 0}

``duplicates`` counts the (bank, time, UID) triples recorded more than once as an
``AccessEvent``: a tap applied twice would be one. ``failed_events`` counts the events the
server kept as failed (``FailedDeviceEvent``), ``failed_examples`` shows the first few.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def applied() -> dict[str, Any]:
    """Per bank: its worker id, the highest event seq applied and its access events."""
    from django.db.models import Count

    from access.models import AccessEvent
    from devices.models import FailedDeviceEvent, LockerBank

    events = dict(
        AccessEvent.objects.values("bank_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("bank_id", "n")
    )
    banks = {
        code: {
            "worker_id": str(worker_id) if worker_id else None,
            "last_event_seq": last_seq,
            "access_events": events.get(pk, 0),
        }
        for pk, code, worker_id, last_seq in LockerBank.objects.order_by("code").values_list(
            "pk", "code", "worker_id", "last_event_seq"
        )
    }
    duplicates = (
        AccessEvent.objects.values("bank_id", "at", "uid")
        .annotate(n=Count("id"))
        .order_by()
        .filter(n__gt=1)
        .count()
    )
    failed = FailedDeviceEvent.objects.order_by("pk")
    return {
        "banks": banks,
        "duplicates": duplicates,
        "failed_events": failed.count(),
        "failed_examples": [
            f"{bank} seq {seq} ({kind}): {error[:300]}"
            for bank, seq, kind, error in failed.values_list("bank__code", "seq", "type", "error")[
                :5
            ]
        ],
    }


def main() -> int:
    if not os.environ.get("DATABASE_URL"):
        print("DATABASE_URL must name the benchmark's database", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    import django

    django.setup()
    print(json.dumps(applied()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
