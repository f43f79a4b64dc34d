"""NFC badge reader on nfcpy: turns cards held to a reader into "tap" callbacks.

The reader polls with ``nfc.ContactlessFrontend.connect(rdwr=...)``, one sense round per call,
and takes the UID from the anticollision response in ``on-discover``; the tag is never
activated. That is all a badge reader needs, it keeps a round short, and it works for cards
nfcpy cannot drive any further (MIFARE Classic badges, for one).

Paths are nfcpy device paths, e.g. ``usb:054c:06c1`` (Sony RC-S380), ``usb:072f:2200``
(ACS ACR122U), ``tty:USB0:pn532`` or, for tests and development, ``udp:127.0.0.1:PORT`` with
a card emulated by :mod:`devices.emulators.nfc_card` on the other end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import nfc
import nfc.clf

log = logging.getLogger(__name__)

#: What a hardware reader looks for: NFC-A (ISO 14443-A, MIFARE, NTAG), NFC-B, FeliCa.
DEFAULT_TARGETS: tuple[str, ...] = ("106A", "106B", "212F")
#: On nfcpy's simulated udp driver every technology that gets no answer costs a full 1 s
#: receive timeout per round; the emulated badges are NFC-A, so only that is sensed there.
UDP_TARGETS: tuple[str, ...] = ("106A",)


class BadgeReaderError(RuntimeError):
    """The NFC reader could not be opened, or failed while polling."""


class TapDebouncer:
    """Turns a stream of card sightings into taps.

    The reader reports every poll round: :meth:`seen` when a card answered, :meth:`cleared`
    when none did. A card that stays on the reader is one tap however long it is held. Once
    a round has found the reader empty, the same card counts as a new tap again only if at
    least ``seconds`` have passed since it was last seen; quicker re-reads are the card
    bouncing at the edge of the field, or one nervous double tap. A different card is a new
    tap at once. Times are seconds from any monotonic clock.
    """

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"debounce seconds must be >= 0, got {seconds!r}")
        self.seconds = seconds
        self._last_seen: dict[str, float] = {}
        # Cards seen since the last empty round. A set rather than one UID because two cards
        # in the field can answer alternately; neither should then re-tap every round.
        self._present: set[str] = set()

    def seen(self, uid: str, now: float) -> bool:
        """Record that ``uid`` answered at ``now``; True if this is a new tap."""
        last = self._last_seen.get(uid)
        is_tap = uid not in self._present and (last is None or now - last >= self.seconds)
        self._last_seen[uid] = now
        self._present.add(uid)
        self._forget_old(now)
        return is_tap

    def cleared(self, now: float) -> None:
        """Record that a round at ``now`` found no card on the reader."""
        self._present.clear()
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        # Bounded memory: an absent card last seen a debounce period ago taps anew anyway.
        for uid in [
            u
            for u, t in self._last_seen.items()
            if u not in self._present and now - t >= self.seconds
        ]:
            del self._last_seen[uid]


def uid_from_target(target: nfc.clf.RemoteTarget) -> str | None:
    """The card UID in a sensed ``nfc.clf.RemoteTarget``, as upper-case hex, or None.

    Same bytes as ``tag.identifier`` after activation: NFCID1 for NFC-A, the RID UID for
    Type 1 tags, PUPI for NFC-B, IDm for FeliCa. Peer-to-peer devices (phones in NFC-DEP
    mode) carry random IDs and are not badges, so they give None, as nfcpy's default
    ``on-discover`` would refuse them.
    """
    if target.sel_res and target.sel_res[0] & 0x40:
        return None
    if target.sensf_res:
        if target.sensf_res[1:3] == b"\x01\xfe":
            return None
        uid = target.sensf_res[1:9]
    elif target.sensb_res:
        uid = target.sensb_res[1:5]
    elif target.rid_res:
        uid = target.rid_res[2:6]
    elif target.sdd_res:
        uid = target.sdd_res
    else:
        return None
    return bytes(uid).hex().upper()


class BadgeReader:
    """Polls one NFC reader and calls ``on_tap(uid)`` once per badge tap.

    ``run()`` blocks until :meth:`stop` is called from another thread (or from ``on_tap``);
    :meth:`start_in_thread` runs it in a daemon thread instead. UIDs are upper-case hex,
    e.g. ``"04A1B2C3D4E5F6"``. ``on_tap`` runs on the polling thread, so it should hand the
    UID on quickly; an exception from it is logged and polling carries on. See
    :class:`TapDebouncer` for what counts as a tap.

    ``targets`` are nfcpy bitrate/technology strings to sense (default: :data:`UDP_TARGETS`
    on ``udp:`` paths, :data:`DEFAULT_TARGETS` otherwise). ``poll_interval`` is the pause
    between sense rounds. A reader is single-use: once stopped, it does not run again.
    """

    def __init__(
        self,
        path: str,
        on_tap: Callable[[str], None],
        *,
        debounce_seconds: float = 1.0,
        targets: Sequence[str] | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self.path = path
        self._on_tap = on_tap
        self._debouncer = TapDebouncer(debounce_seconds)
        if targets is None:
            targets = UDP_TARGETS if path.startswith("udp") else DEFAULT_TARGETS
        if not targets:
            raise ValueError("targets must not be empty")
        self.targets: tuple[str, ...] = tuple(targets)
        self.poll_interval = poll_interval
        #: The error that ended polling in a :meth:`start_in_thread` thread, if any.
        self.error: Exception | None = None

        self._stop = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None
        # Handed from start_in_thread(), which opens it, to the polling thread.
        self._clf: nfc.ContactlessFrontend | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Open the reader and poll until :meth:`stop`; raises :class:`BadgeReaderError`."""
        if self._claim(threading.current_thread()):
            self._poll_until_stopped(self._open())

    def start_in_thread(self, *, name: str | None = None) -> threading.Thread:
        """Open the reader here, then poll in a daemon thread; return that thread.

        Opening happens in the calling thread so that a reader which cannot be opened raises
        :class:`BadgeReaderError` right here, not in a thread nobody joins. A failure later
        on ends the thread and is logged and kept in :attr:`error`.
        """
        thread = threading.Thread(
            target=self._thread_main, name=name or f"badge-reader {self.path}", daemon=True
        )
        if not self._claim(thread):
            raise BadgeReaderError(f"NFC reader {self.path!r} was stopped; create a new one")
        self._clf = self._open()
        thread.start()
        return thread

    def stop(self, timeout: float | None = 2.0) -> bool:
        """Ask polling to end; wait up to ``timeout`` s for the reader to be closed.

        A sense round in progress finishes first: milliseconds on a USB reader, up to the 1 s
        receive timeout on the udp driver. Returns True once polling has ended and the reader
        is closed, or if it never started. Called from ``on_tap`` (the polling thread
        itself) it cannot wait and returns False; polling then ends right after the
        callback. Safe to call more than once.
        """
        with self._lock:
            self._stop.set()
            owner = self._owner
        if owner is None:
            return True
        if owner is threading.current_thread():
            return self._finished.is_set()
        return self._finished.wait(timeout)

    # -- internals -------------------------------------------------------------------------

    def _claim(self, owner: threading.Thread) -> bool:
        """Mark the reader as polling in ``owner``; False if it was stopped before that."""
        with self._lock:
            if self._stop.is_set():
                return False
            if self._owner is not None:
                raise RuntimeError(f"{self!r} is already running")
            self._owner = owner
            return True

    def _open(self) -> nfc.ContactlessFrontend:
        try:
            try:
                return nfc.ContactlessFrontend(self.path)
            except (OSError, ValueError, TypeError) as exc:
                # nfcpy says ENODEV for "nothing there", EACCES/EBUSY for a device it found
                # but could not open, and ValueError for some malformed paths.
                raise BadgeReaderError(f"cannot open NFC reader at {self.path!r}: {exc}") from exc
        except BaseException:
            # Nothing will poll, so nothing for stop() to wait for.
            self._finished.set()
            raise

    def _thread_main(self) -> None:
        clf, self._clf = self._clf, None
        assert clf is not None
        try:
            self._poll_until_stopped(clf)
        except BadgeReaderError as exc:
            self.error = exc
            log.error("%s", exc)
        except Exception as exc:
            self.error = exc
            log.exception("NFC reader %s failed", self.path)

    def _poll_until_stopped(self, clf: nfc.ContactlessFrontend) -> None:
        try:
            log.info("polling NFC reader %s for %s", clf, ", ".join(self.targets))
            while not self._stop.is_set():
                self._poll_once(clf)
                self._stop.wait(self.poll_interval)
        finally:
            clf.close()
            self._finished.set()
            log.info("NFC reader %s closed", self.path)

    def _poll_once(self, clf: nfc.ContactlessFrontend) -> None:
        found: list[str] = []
        rounds = 0

        def terminate() -> bool:
            # connect() asks before every sense round; allow exactly one, so that each round's
            # outcome (card or no card) comes back here for the debouncer.
            nonlocal rounds
            rounds += 1
            return rounds > 1 or self._stop.is_set()

        def on_discover(target: nfc.clf.RemoteTarget) -> bool:
            uid = uid_from_target(target)
            if uid is not None:
                found.append(uid)
            return False

        result = clf.connect(
            rdwr={
                "targets": self.targets,
                "on-discover": on_discover,
                "iterations": 1,
                "interval": 0,
                "beep-on-connect": False,
            },
            terminate=terminate,
        )
        if result is False:
            # connect() swallows IOError (device unplugged), UnsupportedTargetError and
            # KeyboardInterrupt into False after logging them; none of them heals by retrying.
            raise BadgeReaderError(f"NFC reader at {self.path!r} stopped working (see log)")
        now = time.monotonic()
        if not found:
            self._debouncer.cleared(now)
            return
        uid = found[0]
        if self._debouncer.seen(uid, now):
            log.debug("badge tap %s on %s", uid, self.path)
            try:
                self._on_tap(uid)
            except Exception:
                log.exception("on_tap failed for badge %s; reader keeps polling", uid)
