"""ModbusCurrentMeter against pymodbus's own RTU server on a pty (ModbusMeterEmulator), and
register map parsing."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

from devices.drivers.modbus_meter import (
    MAX_REGISTERS_PER_READ,
    ModbusCurrentMeter,
    parse_register_map,
    plan_reads,
)
from devices.emulators.modbus_meter import ModbusMeterEmulator

UNIT = 7
TIMEOUT = 0.5


@pytest.fixture
def emulator() -> Iterator[ModbusMeterEmulator]:
    with ModbusMeterEmulator(unit=UNIT, register_count=32) as emu:
        yield emu


def make_meter(
    emulator: ModbusMeterEmulator, registers: dict[int, int], **kwargs
) -> ModbusCurrentMeter:
    kwargs.setdefault("unit", UNIT)
    kwargs.setdefault("timeout", TIMEOUT)
    return ModbusCurrentMeter(emulator.port, registers=registers, **kwargs)


# -- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["input", "holding"])
def test_values_read_back_per_slot(emulator, function):
    for register, ma in {0: 812, 1: 0, 2: 1500, 3: 42}.items():
        emulator.set_current(register, ma)

    with make_meter(emulator, {1: 0, 2: 1, 3: 2, 4: 3}, function=function) as meter:
        assert meter.read() == {1: 812, 2: 0, 3: 1500, 4: 42}


def test_slots_need_not_be_in_register_order(emulator):
    emulator.set_current(5, 300)
    emulator.set_current(6, 600)
    with make_meter(emulator, {1: 6, 2: 5}) as meter:
        assert meter.read() == {1: 600, 2: 300}


@pytest.mark.parametrize(
    ("scale", "raw", "ma"), [(10.0, 81, 810), (0.1, 8126, 813), (1.0, 65535, 65535)]
)
def test_scale_turns_raw_values_into_milliamps(emulator, scale, raw, ma):
    emulator.set_current(0, raw)
    with make_meter(emulator, {1: 0}, scale=scale) as meter:
        assert meter.read() == {1: ma}


def test_a_changed_current_is_seen_on_the_next_read(emulator):
    with make_meter(emulator, {1: 0, 2: 1}) as meter:
        assert meter.read() == {1: 0, 2: 0}
        emulator.set_current(1, 950)
        assert meter.read() == {1: 0, 2: 950}
        emulator.set_current(1, 40)
        assert meter.read() == {1: 0, 2: 40}


def test_contiguous_registers_are_read_in_one_request_each_run(emulator):
    registers = {1: 0, 2: 1, 3: 2, 4: 3, 5: 10, 6: 11, 7: 20}
    for slot, register in registers.items():
        emulator.set_current(register, slot * 100)

    with make_meter(emulator, registers) as meter:
        before = emulator.requests
        values = meter.read()

    assert values == {slot: slot * 100 for slot in registers}
    assert meter.requests_per_read == 3
    assert emulator.requests - before == 3


def test_a_register_the_meter_does_not_have_reads_none_and_the_rest_still_reads(emulator):
    emulator.set_current(0, 500)
    with make_meter(emulator, {1: 0, 2: 40}) as meter:  # the emulator has registers 0-31
        assert meter.read() == {1: 500, 2: None}


def test_a_stopped_meter_reads_none_within_the_timeout(caplog):
    emulator = ModbusMeterEmulator(unit=UNIT).start()
    emulator.set_current(0, 700)
    meter = make_meter(emulator, {1: 0, 2: 1, 3: 20})
    try:
        assert meter.read() == {1: 700, 2: 0, 3: 0}
        emulator.stop()
        assert not os.path.exists(emulator.port)

        with caplog.at_level(logging.WARNING, logger="devices.drivers.modbus_meter"):
            for _ in range(3):  # the first read finds the line dead, the next the port gone
                started = time.monotonic()
                assert meter.read() == {1: None, 2: None, 3: None}
                assert time.monotonic() - started < TIMEOUT + 0.5
        # One warning per outage, not one per poll.
        assert len([r for r in caplog.records if r.name == "devices.drivers.modbus_meter"]) == 1
    finally:
        meter.close()
        emulator.stop()


def test_a_port_that_does_not_exist_reads_none_at_once():
    meter = ModbusCurrentMeter(
        "/dev/lockerhub-no-such-port", registers={1: 0, 2: 1}, timeout=TIMEOUT
    )
    started = time.monotonic()
    assert meter.read() == {1: None, 2: None}
    assert time.monotonic() - started < TIMEOUT
    meter.close()


def test_a_silent_unit_reads_none_within_the_timeout(emulator):
    # A pty nobody answers on: the host end of an emulator that was never started.
    silent = ModbusMeterEmulator(unit=UNIT)
    try:
        meter = ModbusCurrentMeter(silent.port, registers={1: 0, 2: 5}, unit=UNIT, timeout=TIMEOUT)
        started = time.monotonic()
        assert meter.read() == {1: None, 2: None}
        # Two requests, but after the first got no answer the second is not even sent.
        assert time.monotonic() - started < 2 * TIMEOUT
        meter.close()
    finally:
        silent.stop()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registers": {}}, "at least one slot"),
        ({"registers": {1: 0, 2: 0}}, "same register"),
        ({"registers": {1: 70000}}, "not 0-65535"),
        ({"registers": {1: 0}, "unit": 0}, "broadcast"),
        ({"registers": {1: 0}, "function": "coils"}, "'holding' or 'input'"),
        ({"registers": {1: 0}, "scale": 0}, "positive"),
        ({"registers": {1: 0}, "scale": float("nan")}, "positive"),
        ({"registers": {1: 0}, "timeout": 0}, "timeout"),
    ],
)
def test_meter_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModbusCurrentMeter("/dev/null", **kwargs)


def test_plan_reads_splits_runs_at_gaps_and_at_the_request_limit():
    assert plan_reads(frozenset()) == []
    assert plan_reads({3, 1, 2, 7}) == [(1, 3), (7, 1)]
    assert plan_reads(set(range(300))) == [(0, 125), (125, 125), (250, 50)]
    assert all(count <= MAX_REGISTERS_PER_READ for _, count in plan_reads(set(range(1000))))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:0,2:1,3:2", {1: 0, 2: 1, 3: 2}),
        ("1-12@0", {slot: slot - 1 for slot in range(1, 13)}),
        ("5-7@100", {5: 100, 6: 101, 7: 102}),
        (" 1 : 4 , 2-3 @ 10 ", {1: 4, 2: 10, 3: 11}),
        ("3:0", {3: 0}),
        ("1-1@65535", {1: 65535}),
    ],
)
def test_parse_register_map(text, expected):
    assert parse_register_map(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1:0,,2:1", "empty item"),
        ("1=0", "not SLOT:REGISTER or FIRST-LAST@REGISTER"),
        ("a:b", "not SLOT:REGISTER"),
        ("1:-1", "not SLOT:REGISTER"),
        ("1-12", "not SLOT:REGISTER"),
        ("12-1@0", "runs backwards"),
        ("0:5", "slots start at 1"),
        ("1:70000", "beyond 65535"),
        ("1-3@65534", "beyond 65535"),
        ("1:0,1:1", "slot 1 is mapped twice"),
        ("1-3@0,3:9", "slot 3 is mapped twice"),
        ("1:0,2:0", "register 0 is used by slots 1 and 2"),
    ],
)
def test_parse_register_map_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_register_map(text)


# -- the emulator itself ----------------------------------------------------------------------


def test_emulator_checks_what_it_is_told():
    with ModbusMeterEmulator(register_count=4) as emu:
        with pytest.raises(ValueError, match="register must be 0-3"):
            emu.set_current(4, 1)
        with pytest.raises(ValueError, match="0-65535"):
            emu.set_current(0, 70000)
        emu.set_current(3, 65535)
        assert emu.current(3) == 65535


def test_emulator_stop_is_prompt_and_safe_twice():
    emu = ModbusMeterEmulator().start()
    assert os.path.exists(emu.port)
    started = time.monotonic()
    emu.stop()
    emu.stop()
    assert time.monotonic() - started < 1.0
    assert not os.path.exists(emu.port)
    with pytest.raises(RuntimeError, match="stopped"):
        emu.start()
