"""ChargeTracker: thresholds, hysteresis, dwell, latching fault and failed reads, with explicit
times (seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.charge import ChargeState, ChargeThresholds, ChargeTracker

EMPTY = ChargeState.EMPTY
PNC = ChargeState.PRESENT_NOT_CHARGING
CHARGING = ChargeState.CHARGING
CHARGED = ChargeState.CHARGED
FAULT = ChargeState.FAULT
UNKNOWN = ChargeState.UNKNOWN

TH = ChargeThresholds()  # on 150, off 100, charged below 60, fault over 3500, dwell 5 s


def hold(
    tracker: ChargeTracker,
    present: bool | None,
    current_ma: int | None,
    start: float,
    end: float,
    step: float = 1.0,
) -> list[ChargeState]:
    """Feed the same sample every ``step`` s from ``start`` to ``end`` inclusive."""
    count = round((end - start) / step) + 1
    return [tracker.update(present, current_ma, start + i * step) for i in range(count)]


def charging_tracker(at: float = 0.0) -> ChargeTracker:
    """A tracker that has reported charging since ``at + 5``."""
    tracker = ChargeTracker()
    hold(tracker, True, 800, at, at + 5)
    assert tracker.state is CHARGING
    return tracker


def charged_tracker() -> ChargeTracker:
    tracker = charging_tracker()
    hold(tracker, True, 30, 6, 11)
    assert tracker.state is CHARGED
    return tracker


# -- the basics -------------------------------------------------------------------------------


def test_the_states_are_exactly_the_six_agreed_values():
    assert {s.value for s in ChargeState} == {
        "empty",
        "present_not_charging",
        "charging",
        "charged",
        "fault",
        "unknown",
    }
    assert ChargeState("charging") is CHARGING
    assert CHARGING == "charging"


def test_a_new_tracker_is_unknown_until_the_first_state_has_dwelt():
    tracker = ChargeTracker()
    assert tracker.state is UNKNOWN
    assert hold(tracker, False, 0, 0, 4) == [UNKNOWN] * 5
    assert tracker.update(False, 0, 5.0) is EMPTY  # exactly dwell_seconds later


def test_dwell_is_measured_in_time_not_in_samples():
    tracker = ChargeTracker()
    tracker.update(True, 800, 0.0)
    assert tracker.update(True, 800, 4.99) is UNKNOWN
    assert tracker.update(True, 800, 5.0) is CHARGING


def test_zero_dwell_reports_at_once():
    tracker = ChargeTracker(ChargeThresholds(dwell_seconds=0))
    assert tracker.update(True, 800, 0.0) is CHARGING
    assert tracker.update(False, 0, 0.5) is EMPTY


def test_inserting_a_device_goes_from_empty_straight_to_charging():
    tracker = ChargeTracker()
    hold(tracker, False, 0, 0, 10)
    # Pushed in at 11; the charger starts drawing two seconds later.
    states = hold(tracker, True, 0, 11, 12) + hold(tracker, True, 900, 13, 20)
    assert PNC not in states
    assert states[-1] is CHARGING
    assert tracker.state_since == 13
    assert states.index(CHARGING) == 7  # at 18, 13 + dwell


def test_a_full_device_put_in_is_present_not_charging():
    tracker = ChargeTracker()
    hold(tracker, True, 30, 0, 5)
    assert tracker.state is PNC
    assert not tracker.has_charged


# -- dwell: short excursions are not reported -------------------------------------------------


def test_a_dip_shorter_than_dwell_keeps_charging():
    tracker = charging_tracker()
    states = hold(tracker, True, 0, 6, 9) + hold(tracker, True, 800, 10, 30)
    assert set(states) == {CHARGING}


def test_a_removal_shorter_than_dwell_is_not_reported():
    tracker = charging_tracker()
    states = hold(tracker, False, 0, 6, 10) + hold(tracker, True, 800, 11, 20)
    assert set(states) == {CHARGING}


def test_a_spike_over_charging_on_starts_nothing():
    tracker = ChargeTracker()
    hold(tracker, True, 20, 0, 5)
    states = hold(tracker, True, 400, 6, 8) + hold(tracker, True, 120, 9, 30)
    assert set(states) == {PNC}


def test_removal_is_reported_after_dwell():
    tracker = charging_tracker()
    states = hold(tracker, False, 0, 6, 11)
    assert states == [CHARGING] * 5 + [EMPTY]


# -- hysteresis: no flapping around the thresholds --------------------------------------------


def test_current_wobbling_around_charging_on_does_not_flap_once_charging():
    tracker = charging_tracker()
    wobble = [140, 160] * 30
    states = [tracker.update(True, ma, 6 + i) for i, ma in enumerate(wobble)]
    assert set(states) == {CHARGING}


def test_current_wobbling_around_charging_on_does_not_start_charging():
    tracker = ChargeTracker()
    hold(tracker, True, 0, 0, 5)
    wobble = [140, 160] * 30
    states = [tracker.update(True, ma, 6 + i) for i, ma in enumerate(wobble)]
    assert set(states) == {PNC}


def test_current_wobbling_around_charging_off_does_not_flap():
    tracker = charging_tracker()
    wobble = [95, 105] * 30
    states = [tracker.update(True, ma, 6 + i) for i, ma in enumerate(wobble)]
    assert set(states) == {CHARGING}


def test_current_inside_the_band_keeps_whatever_state_it_had():
    charging = charging_tracker()
    idle = ChargeTracker()
    hold(idle, True, 0, 0, 5)
    assert hold(charging, True, 120, 6, 60)[-1] is CHARGING
    assert hold(idle, True, 120, 6, 60)[-1] is PNC


def test_charging_stops_below_charging_off():
    tracker = charging_tracker()
    states = hold(tracker, True, 99, 6, 11)
    assert states[-1] is PNC  # not charging, but not down to trickle either


def test_trickle_after_charging_is_charged():
    tracker = charging_tracker()
    assert hold(tracker, True, 30, 6, 11)[-1] is CHARGED


def test_tapering_through_the_middle_ends_charged():
    tracker = charging_tracker()
    states = hold(tracker, True, 80, 6, 12) + hold(tracker, True, 40, 13, 18)
    assert states[-1] is CHARGED
    assert tracker.has_charged


def test_charged_is_sticky_while_the_trickle_wanders():
    tracker = charged_tracker()
    wander = [20, 59, 61, 90, 120, 149, 5, 70] * 5
    states = [tracker.update(True, ma, 12 + i) for i, ma in enumerate(wander)]
    assert set(states) == {CHARGED}


def test_a_top_up_after_charged_is_charging_again():
    tracker = charged_tracker()
    assert hold(tracker, True, 600, 12, 17)[-1] is CHARGING


def test_trickle_without_having_charged_is_not_charged():
    tracker = ChargeTracker()
    hold(tracker, True, 0, 0, 5)
    assert hold(tracker, True, 59, 6, 20)[-1] is PNC


def test_a_new_device_does_not_inherit_charged_from_the_last_one():
    tracker = charged_tracker()
    hold(tracker, False, 0, 12, 17)
    assert tracker.state is EMPTY
    assert hold(tracker, True, 30, 18, 23)[-1] is PNC


# -- fault ------------------------------------------------------------------------------------


def test_over_current_is_fault_after_dwell():
    tracker = charging_tracker()
    states = hold(tracker, True, 3501, 6, 11)
    assert states == [CHARGING] * 5 + [FAULT]


def test_exactly_fault_over_is_not_over_current():
    tracker = charging_tracker()
    assert hold(tracker, True, 3500, 6, 20)[-1] is CHARGING


def test_an_over_current_spike_shorter_than_dwell_is_not_a_fault():
    tracker = charging_tracker()
    states = hold(tracker, True, 5000, 6, 8) + hold(tracker, True, 800, 9, 20)
    assert FAULT not in states


def test_fault_is_latched_until_the_device_is_taken_out():
    tracker = charging_tracker()
    hold(tracker, True, 4000, 6, 11)
    assert tracker.state is FAULT
    assert set(hold(tracker, True, 800, 12, 40)) == {FAULT}
    assert set(hold(tracker, True, 0, 41, 50)) == {FAULT}
    assert set(hold(tracker, None, None, 51, 60)) == {FAULT}
    assert hold(tracker, False, 0, 61, 66)[-1] is EMPTY
    assert hold(tracker, True, 800, 67, 72)[-1] is CHARGING


def test_over_current_in_a_slot_that_reads_empty_is_a_fault():
    tracker = ChargeTracker()
    assert hold(tracker, False, 4000, 0, 5)[-1] is FAULT


# -- failed reads -----------------------------------------------------------------------------


def test_a_failed_presence_read_is_unknown_after_dwell():
    tracker = charging_tracker()
    assert hold(tracker, None, 800, 6, 11) == [CHARGING] * 5 + [UNKNOWN]


def test_a_failed_current_read_is_unknown_after_dwell():
    tracker = charging_tracker()
    assert hold(tracker, True, None, 6, 11) == [CHARGING] * 5 + [UNKNOWN]


def test_a_short_read_outage_keeps_the_state():
    tracker = charging_tracker()
    states = hold(tracker, None, None, 6, 9) + hold(tracker, True, 800, 10, 20)
    assert set(states) == {CHARGING}


def test_after_a_long_outage_hysteresis_resumes_from_the_last_known_state():
    tracker = charging_tracker()
    hold(tracker, True, None, 6, 20)
    assert tracker.state is UNKNOWN
    # 120 mA is inside the band: still charging, as before the outage.
    assert hold(tracker, True, 120, 21, 26)[-1] is CHARGING


def test_an_empty_slot_ignores_a_failed_current_read():
    tracker = ChargeTracker()
    assert hold(tracker, False, None, 0, 5)[-1] is EMPTY


def test_over_current_wins_over_a_failed_presence_read():
    tracker = ChargeTracker()
    assert hold(tracker, None, 4000, 0, 5)[-1] is FAULT


# -- seeding, never-charged, bookkeeping ------------------------------------------------------


def test_initial_state_resumes_after_a_restart():
    tracker = ChargeTracker(initial=CHARGED)
    assert tracker.state is CHARGED
    assert set(hold(tracker, True, 30, 0, 20)) == {CHARGED}


def test_initial_fault_stays_latched():
    tracker = ChargeTracker(initial=FAULT)
    assert set(hold(tracker, True, 800, 0, 20)) == {FAULT}


def test_never_charged_is_for_the_alert_layer_and_changes_no_state():
    th = ChargeThresholds(never_charged_after_seconds=600)
    tracker = ChargeTracker(th)
    hold(tracker, True, 0, 0, 5, step=5)
    assert tracker.state is PNC
    assert tracker.state_since == 0
    assert not tracker.never_charged(599)
    assert hold(tracker, True, 0, 10, 700, step=10)[-1] is PNC
    assert tracker.never_charged(700)


def test_never_charged_is_false_after_charging_or_when_unset():
    tracker = ChargeTracker(ChargeThresholds(never_charged_after_seconds=60))
    hold(tracker, True, 800, 0, 5)
    hold(tracker, True, 80, 6, 200)
    assert tracker.state is PNC
    assert not tracker.never_charged(200)

    unset = ChargeTracker()
    hold(unset, True, 0, 0, 1000, step=10)
    assert not unset.never_charged(1000)


def test_time_must_not_go_backwards():
    tracker = ChargeTracker()
    tracker.update(True, 0, 10.0)
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(True, 0, 9.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"charging_on_ma": 90}, "charging_off_ma <= charging_on_ma"),
        ({"charged_below_ma": 120}, "charged_below_ma <= charging_off_ma"),
        ({"charged_below_ma": -1}, "0 <= charged_below_ma"),
        ({"fault_over_ma": 150}, "charging_on_ma < fault_over_ma"),
        ({"dwell_seconds": -1}, "dwell_seconds"),
        ({"never_charged_after_seconds": -5}, "never_charged_after_seconds"),
    ],
)
def test_thresholds_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChargeThresholds(**kwargs)


# -- properties -------------------------------------------------------------------------------


@dataclass
class Reference:
    """The documented rules with no dwell at all: what a slow signal must settle to."""

    thresholds: ChargeThresholds
    state: ChargeState = UNKNOWN
    basis: ChargeState = UNKNOWN  # last state that was not unknown or fault
    has_charged: bool = False

    def step(self, present: bool | None, current: int | None) -> ChargeState:
        th = self.thresholds
        over = current is not None and current > th.fault_over_ma
        if over or self.state is FAULT:
            new = EMPTY if (present is False and not over) else FAULT
        elif present is None or (present and current is None):
            new = UNKNOWN
        elif not present:
            new = EMPTY
        elif current >= th.charging_on_ma:
            new = CHARGING
        elif self.basis is CHARGING:
            new = (
                CHARGING
                if current >= th.charging_off_ma
                else (CHARGED if current < th.charged_below_ma else PNC)
            )
        elif self.basis is CHARGED:
            new = CHARGED
        else:
            new = CHARGED if (self.has_charged and current < th.charged_below_ma) else PNC

        self.state = new
        if new is CHARGING:
            self.has_charged = True
        if new is EMPTY:
            self.has_charged = False
        if new not in (UNKNOWN, FAULT):
            self.basis = new
        return new


presences = st.one_of(st.none(), st.booleans())
currents = st.one_of(
    st.none(),
    st.sampled_from([0, 59, 60, 99, 100, 149, 150, 3500, 3501]),
    st.integers(min_value=0, max_value=5000),
)
samples = st.tuples(presences, currents)
dwells = st.sampled_from([0.0, 1.0, 5.0])


@settings(max_examples=200, deadline=None)
@given(
    dwell=dwells,
    segments=st.lists(
        st.tuples(
            samples, st.floats(min_value=0.05, max_value=2.0), st.integers(min_value=2, max_value=4)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_slow_signals_settle_to_the_reference_state(dwell, segments):
    """Readings constant for longer than dwell: the tracker equals the undebounced rules."""
    th = ChargeThresholds(dwell_seconds=dwell)
    tracker = ChargeTracker(th)
    reference = Reference(th)
    t = 0.0
    for (present, current), step, extra_steps in segments:
        start = t
        while t < start + dwell:
            tracker.update(present, current, t)
            t += step
        # Now at or past start + dwell; at least one more sample a full step later, so float
        # rounding in the sums cannot leave the segment a hair short of the dwell time.
        for _ in range(extra_steps):
            tracker.update(present, current, t)
            t += step
        assert tracker.state is reference.step(present, current)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.lists(st.tuples(samples, st.floats(min_value=0.0, max_value=3.0)), max_size=30),
    tail=samples,
)
def test_after_any_history_constant_readings_settle_within_dwell_and_stay(prefix, tail):
    tracker = ChargeTracker()
    t = 0.0
    for (present, current), gap in prefix:
        tracker.update(present, current, t)
        t += gap
    before = tracker.state
    present, current = tail

    # Sampled every 0.5 s: settled by the first sample at or after dwell (float sums of
    # arbitrary start times can land a hair short of it, hence one sample more).
    settled = hold(tracker, present, current, t, t + TH.dwell_seconds + 0.5, step=0.5)[-1]
    later = hold(tracker, present, current, t + 6, t + 60, step=0.5)

    assert set(later) == {settled}
    # Where history cannot matter, the settled state is fixed by the reading alone.
    if current is not None and current > TH.fault_over_ma:
        assert settled is FAULT
    elif before is FAULT:
        assert settled is (EMPTY if present is False else FAULT)
    elif present is False:
        assert settled is EMPTY
    elif present is None or current is None:
        assert settled is UNKNOWN
    elif current >= TH.charging_on_ma:
        assert settled is CHARGING
    else:
        assert settled in (PNC, CHARGING, CHARGED)


@settings(max_examples=200, deadline=None)
@given(
    dwell=st.sampled_from([1.0, 5.0]),
    readings=st.lists(st.tuples(samples, st.floats(min_value=0.0, max_value=4.0)), max_size=80),
)
def test_the_reported_state_never_changes_faster_than_dwell(dwell, readings):
    tracker = ChargeTracker(ChargeThresholds(dwell_seconds=dwell))
    changes: list[float] = []
    previous = tracker.state
    t = 0.0
    for (present, current), gap in readings:
        state = tracker.update(present, current, t)
        if state is not previous:
            changes.append(t)
            previous = state
        t += gap
    assert all(b - a >= dwell for a, b in pairwise(changes))
