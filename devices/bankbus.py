"""The server → bank path, through the database alone: no Redis.

A change a bank must hear about (a revocation, a loan, a rule, a slot out of service) writes a
:class:`~devices.models.BankNotice` row in its own transaction (:func:`changed`, called by the
audit log for every audited change, so no action can forget it). After commit, the banks'
connections are woken (:func:`wake`): in this process directly, and in every other server
process through PostgreSQL ``NOTIFY``. A woken connection reads the notices and the pending
commands from the database and sends its bank what is new. A periodic check is the backstop
for a wake-up that never came (SQLite has no ``NOTIFY``; a listener may be reconnecting).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connections, transaction

logger = logging.getLogger(__name__)

CHANNEL = "lockerhub_banks"
EVERY_BANK = "*"

_waiters: dict[str, set[Callable[[], None]]] = {}
_waiters_lock = threading.Lock()
_listener: threading.Thread | None = None
_stopping = threading.Event()


def register(code: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` (from any thread) whenever bank ``code`` may have something new."""
    with _waiters_lock:
        _waiters.setdefault(code, set()).add(callback)
    _ensure_listener()


def unregister(code: str, callback: Callable[[], None]) -> None:
    with _waiters_lock:
        callbacks = _waiters.get(code)
        if callbacks is not None:
            callbacks.discard(callback)
            if not callbacks:
                del _waiters[code]


def wake_here(target: str) -> None:
    """Wake this process's connections of bank ``target`` (or of every bank, ``"*"``)."""
    with _waiters_lock:
        if target == EVERY_BANK:
            callbacks = [cb for group in _waiters.values() for cb in group]
        else:
            callbacks = list(_waiters.get(target, ()))
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a closed loop: that connection is going away anyway
            logger.debug("bank wake-up failed", exc_info=True)


def wake(code: str | None) -> None:
    """After the current transaction commits, wake bank ``code``'s connection (None: all)."""
    target = code or EVERY_BANK
    transaction.on_commit(lambda: _send(target))


def _send(target: str) -> None:
    wake_here(target)
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, target])
    except DatabaseError:
        # The periodic check still delivers it; the change itself is committed.
        logger.warning("could not notify other server processes of bank %s", target)


def changed(scope: str, *, bank_id: int | None = None, holder_id: int | None = None) -> None:
    """Record, in the current transaction, that banks' snapshots must follow a change."""
    from devices.models import BankNotice, LockerBank

    BankNotice.objects.create(scope=scope, bank_id=bank_id, holder_id=holder_id)
    code = None
    if bank_id is not None:
        code = LockerBank.objects.filter(pk=bank_id).values_list("code", flat=True).first()
    wake(code)


def audited(action: str, subject: Any) -> None:
    """What an audited change means for the banks' snapshots (called by ``audit.record``).

    One place maps every kind of record to the banks that must hear of it, so that a new
    action that is audited (as every action is) reaches the banks without anyone remembering.
    """
    from devices.models import BankNotice, Slot

    if subject is None:
        return
    label = subject._meta.label_lower
    holder_field = _HOLDER_OF.get(label)
    if holder_field is not None:
        if label == "access.accessevent" and not subject.granted:
            return  # a denied tap changes nobody's loans
        holder_id = getattr(subject, holder_field)
        if holder_id is not None:
            changed(BankNotice.Scope.HOLDER, holder_id=holder_id)
    elif label in _EVERYTHING:
        changed(BankNotice.Scope.ALL)
    elif label == "devices.slot":
        changed(BankNotice.Scope.SLOTS, bank_id=subject.bank_id)
    elif label == "devices.lockerbank" and not action.endswith(".deleted"):
        changed(BankNotice.Scope.SLOTS, bank_id=subject.pk)
    elif label == "assets.asset":
        bank_id = Slot.objects.filter(asset_id=subject.pk).values_list("bank_id", flat=True).first()
        if bank_id is not None:
            changed(BankNotice.Scope.SLOTS, bank_id=bank_id)


# Records about one person: their badges, shifts, loans and grants at a bank.
_HOLDER_OF = {
    "access.employee": "pk",
    "access.badge": "employee_id",
    "access.shiftassignment": "employee_id",
    "assets.checkout": "employee_id",
    "access.accessevent": "employee_id",
}
# Records whose change may touch anyone at any bank.
_EVERYTHING = frozenset(
    {
        "access.accessrule",
        "access.shift",
        "access.employeegroup",
        "access.department",
        "assets.assettype",
    }
)


# -- PostgreSQL LISTEN: other processes' wake-ups ----------------------------------------------


def _ensure_listener() -> None:
    global _listener
    if connections["default"].vendor != "postgresql":
        return
    with _waiters_lock:
        if _listener is not None:
            return
        _listener = threading.Thread(target=_listen, name="bank-notify-listener", daemon=True)
        _listener.start()


def _idle() -> bool:
    """True, and the listener slot freed, when no connection waits any more (lock held)."""
    global _listener
    if _waiters and not _stopping.is_set():
        return False
    _listener = None
    return True


def stop_listening(timeout: float = 5.0) -> None:
    """Forget every waiter and let go of the listener's database connection (process exit,
    or a test run about to drop its database)."""
    with _waiters_lock:
        _waiters.clear()
        listener = _listener
    _stopping.set()
    if listener is not None:
        listener.join(timeout)
    _stopping.clear()


def _conninfo() -> dict[str, Any]:
    settings = connections["default"].settings_dict
    params = {
        "dbname": settings["NAME"],
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": settings.get("PORT") or None,
    }
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if settings.get("OPTIONS", {}).get(key):
            params[key] = settings["OPTIONS"][key]
    return {k: v for k, v in params.items() if v is not None}


def _listen() -> None:
    import psycopg

    delay = 0.5
    while True:
        with _waiters_lock:
            if _idle():
                return  # nobody to wake; the next register() starts a new listener
        try:
            with psycopg.connect(**_conninfo(), autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                delay = 0.5
                # Woken by notifications; the timeout lets the thread notice it is idle (and
                # let go of the database, which a test run drops at its end).
                while True:
                    for notice in conn.notifies(timeout=1.0):
                        wake_here(notice.payload)
                    with _waiters_lock:
                        if _idle():
                            return
        except Exception as exc:
            logger.warning("bank notification listener: %s; retrying in %.1f s", exc, delay)
            threading.Event().wait(delay)
            delay = min(delay * 2, 10.0)
