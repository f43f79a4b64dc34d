"""On PostgreSQL a statement a connection keeps running is prepared once and then reused."""

from __future__ import annotations

import pytest
from django.db import connection

from access.actions import present_badge
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="prepared statements are a PostgreSQL feature; CI's second pass runs this",
    ),
]


def prepared() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db
def test_a_repeated_decision_runs_on_prepared_statements(world: World) -> None:
    for minute in range(8):  # past the default threshold of 5 runs
        present_badge(world.bank, "DEADBEEF", now=WEDNESDAY_10AM.replace(minute=minute))

    statements = prepared()
    assert any('FROM "access_badge"' in s for s in statements), statements
    assert any('INSERT INTO "access_accessevent"' in s for s in statements), statements
