"""Charge state of a slot from its presence sensor and charging current. Pure logic, no I/O.

The charge monitor samples every slot (presence from the lock board, current from a meter)
and feeds the samples to one :class:`ChargeTracker` per slot, which reports a debounced
:class:`ChargeState`. Times are seconds from a monotonic clock (``time.monotonic()``).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.wire import ChargeState

__all__ = ["ChargeState", "ChargeThresholds", "ChargeTracker"]


# States that describe the device rather than a problem with it or with the readings.
_PHYSICAL = frozenset(
    {
        ChargeState.EMPTY,
        ChargeState.PRESENT_NOT_CHARGING,
        ChargeState.CHARGING,
        ChargeState.CHARGED,
    }
)


@dataclass(frozen=True)
class ChargeThresholds:
    """Current thresholds (mA) and times (s) for :class:`ChargeTracker`.

    ``charging_on_ma``/``charging_off_ma`` form the hysteresis band: a device starts
    charging at or above *on* and stops below *off*. A device that has charged since it was
    put in and then draws less than ``charged_below_ma`` (trickle) is charged. Above
    ``fault_over_ma`` is over-current. A new state must hold ``dwell_seconds`` before it is
    reported. ``never_charged_after_seconds`` does not change any state: it is what
    :meth:`ChargeTracker.never_charged` measures against, for the alert layer.
    """

    charging_on_ma: int = 150
    charging_off_ma: int = 100
    charged_below_ma: int = 60
    fault_over_ma: int = 3500
    dwell_seconds: float = 5.0
    never_charged_after_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.charged_below_ma <= self.charging_off_ma:
            raise ValueError(
                f"need 0 <= charged_below_ma <= charging_off_ma, got "
                f"{self.charged_below_ma} and {self.charging_off_ma}"
            )
        if not self.charging_off_ma <= self.charging_on_ma < self.fault_over_ma:
            raise ValueError(
                f"need charging_off_ma <= charging_on_ma < fault_over_ma, got "
                f"{self.charging_off_ma}, {self.charging_on_ma} and {self.fault_over_ma}"
            )
        if self.dwell_seconds < 0:
            raise ValueError(f"dwell_seconds must be >= 0, got {self.dwell_seconds}")
        if self.never_charged_after_seconds is not None and self.never_charged_after_seconds < 0:
            raise ValueError(
                f"never_charged_after_seconds must be >= 0 or None, got "
                f"{self.never_charged_after_seconds}"
            )


class ChargeTracker:
    """The debounced charge state of one slot.

    Every :meth:`update` classifies its sample into a *candidate* state, first match wins:

    1. ``current_ma > fault_over_ma``: **fault**, whatever presence says (over-current in a
       slot that reads empty is still a short).
    2. Fault has been reported: **fault**, unless ``present is False``, then **empty**. A
       fault is latched until the device is taken out; a shorted battery that recovers for a
       while is still a shorted battery.
    3. ``present is None`` (presence read failed): **unknown**.
    4. ``present is False``: **empty**. The current of an empty slot is sensor offset and is
       ignored, a failed current read included.
    5. ``current_ma is None`` (current read failed): **unknown**.
    6. ``current_ma >= charging_on_ma``: **charging**.
    7. Basis is charging and ``current_ma >= charging_off_ma``: **charging** (hysteresis).
    8. Basis is charged: **charged**; it stays so until a top-up draws ``charging_on_ma``,
       so a trickle wandering around ``charged_below_ma`` does not flap.
    9. The device has been reported charging since it was put in and ``current_ma <
       charged_below_ma``: **charged** (trickle).
    10. Otherwise: **present_not_charging**. That includes a device that is put in already
        full: with only presence and current it cannot be told from one that does not
        charge, and the alert layer decides how long is too long (:meth:`never_charged`).

    The *basis* is the last reported state other than unknown and fault, so an outage of
    the readings does not make a charging device forget that it was charging.

    **Dwell.** The reported state changes to the candidate only after the candidate has
    stayed the same for ``dwell_seconds``; any different candidate in between restarts the
    clock. This applies to every transition, empty to present and back included: presence
    switches bounce while a device is pushed in, and a charger takes a moment to start, so
    a slot goes from empty straight to charging instead of showing present_not_charging on
    the way. Because rules 6 to 9 compare against the reported basis, not against the last
    candidate, a spike over ``charging_on_ma`` starts nothing unless the current stays up
    for the dwell time, and a dip under ``charging_off_ma`` ends nothing unless it stays
    down.

    Consequences worth knowing: the reported state lags reality by ``dwell_seconds``; a
    device swapped for another faster than that looks like one device; and with constant
    readings the reported state settles after ``dwell_seconds`` and then stays put.

    The tracker starts as unknown (or as ``initial``, e.g. the state persisted before a
    restart, so that charged devices do not come back as present_not_charging).
    """

    def __init__(
        self,
        thresholds: ChargeThresholds | None = None,
        *,
        initial: ChargeState = ChargeState.UNKNOWN,
    ) -> None:
        self.thresholds = thresholds or ChargeThresholds()
        self._state = ChargeState(initial)
        self._since: float | None = None
        self._candidate = self._state
        self._candidate_since: float | None = None
        self._last_now: float | None = None
        self._basis = self._state if self._state in _PHYSICAL else ChargeState.UNKNOWN
        self._has_charged = self._state in (ChargeState.CHARGING, ChargeState.CHARGED)
        self._fault_latched = self._state is ChargeState.FAULT

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.value}>"

    @property
    def state(self) -> ChargeState:
        """The reported (debounced) state."""
        return self._state

    @property
    def state_since(self) -> float | None:
        """When the reported state began: the time its candidate first appeared."""
        return self._since

    @property
    def has_charged(self) -> bool:
        """Whether the device in the slot has been reported charging since it was put in."""
        return self._has_charged

    def update(self, present: bool | None, current_ma: int | None, now: float) -> ChargeState:
        """Feed one sample; ``None`` means that reading failed. Returns the reported state."""
        if self._last_now is not None and now < self._last_now:
            raise ValueError(f"time went backwards: {now} after {self._last_now}")
        self._last_now = now
        if self._since is None:
            self._since = now

        candidate = self._classify(present, current_ma)
        if candidate is not self._candidate or self._candidate_since is None:
            self._candidate = candidate
            self._candidate_since = now
        if (
            self._candidate is not self._state
            and now - self._candidate_since >= self.thresholds.dwell_seconds
        ):
            self._report(self._candidate, self._candidate_since)
        return self._state

    def never_charged(self, now: float) -> bool:
        """True when a device has sat in the slot without ever charging for too long.

        That is: ``never_charged_after_seconds`` is set, the slot is reported
        present_not_charging, the device has not charged since it was put in, and the state
        began at least that many seconds before ``now``.
        """
        limit = self.thresholds.never_charged_after_seconds
        return (
            limit is not None
            and self._state is ChargeState.PRESENT_NOT_CHARGING
            and not self._has_charged
            and self._since is not None
            and now - self._since >= limit
        )

    def _classify(self, present: bool | None, current_ma: int | None) -> ChargeState:
        t = self.thresholds
        if current_ma is not None and current_ma > t.fault_over_ma:
            return ChargeState.FAULT
        if self._fault_latched:
            return ChargeState.EMPTY if present is False else ChargeState.FAULT
        if present is None:
            return ChargeState.UNKNOWN
        if not present:
            return ChargeState.EMPTY
        if current_ma is None:
            return ChargeState.UNKNOWN
        if current_ma >= t.charging_on_ma:
            return ChargeState.CHARGING
        if self._basis is ChargeState.CHARGING and current_ma >= t.charging_off_ma:
            return ChargeState.CHARGING
        if self._basis is ChargeState.CHARGED:
            return ChargeState.CHARGED
        if self._has_charged and current_ma < t.charged_below_ma:
            return ChargeState.CHARGED
        return ChargeState.PRESENT_NOT_CHARGING

    def _report(self, state: ChargeState, since: float) -> None:
        self._state = state
        self._since = since
        if state is ChargeState.FAULT:
            self._fault_latched = True
        elif state is ChargeState.EMPTY:
            # The device is gone; whatever comes next starts from scratch.
            self._fault_latched = False
            self._has_charged = False
        elif state is ChargeState.CHARGING:
            self._has_charged = True
        if state in _PHYSICAL:
            self._basis = state
