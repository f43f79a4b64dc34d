"""An employee sees only their own checkouts; staff see every one."""

from __future__ import annotations

from access.actions import issue_badge
from lockerhub.audit import SYSTEM
from tests.api.conftest import key_client, session_client
from tests.conftest import WEDNESDAY_10AM, World, make_employee
from tests.flows import take


def test_an_employee_sees_only_their_own_checkouts(
    world: World, employee_user, make_key, at_wednesday_10am
) -> None:
    _, mine = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    ben = make_employee("E1002", "Ben", world.department, site=world.site)
    ben.shift_assignments.create(
        shift=world.day_shift, valid_from=world.ana.shift_assignments.get().valid_from
    )
    issue_badge(ben, "0D0D0D0D", actor=SYSTEM, valid_from=WEDNESDAY_10AM.replace(hour=0))
    _, theirs = take(world.bank, "0D0D0D0D", WEDNESDAY_10AM)
    world.ana.user = employee_user
    world.ana.save()

    own = session_client(employee_user).get("/api/checkouts/").json()["results"]
    assert [c["id"] for c in own] == [mine.pk]
    assert session_client(employee_user).get(f"/api/checkouts/{theirs.pk}/").status_code == 404

    every = key_client(make_key("supervisor")).get("/api/checkouts/").json()["results"]
    assert {c["id"] for c in every} == {mine.pk, theirs.pk}
