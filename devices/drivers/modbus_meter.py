"""Multi-channel current meter on Modbus RTU: one register per charging slot.

Read with pymodbus's synchronous serial client. Slots map to register addresses (0-based,
as on the wire: a manual's "30001" or "40001" is address 0), and a raw register value times
``scale`` is the current in mA. The mapping usually comes from configuration through
:func:`parse_register_map`::

    meter = ModbusCurrentMeter("/dev/ttyUSB1", registers=parse_register_map("1-12@0"))
    meter.read()  # {1: 812, 2: 0, 3: None, ...}; None: that read failed

pymodbus 3.16 notes: the unit is passed as ``device_id=`` (``slave=``/``unit=`` are gone);
addresses and ``count`` are keyword-only after the address; a request that gets no answer
raises ``ModbusIOException`` after ``retries`` retries of ``timeout`` seconds each, and an
answer with a Modbus exception code comes back as a response whose ``isError()`` is true.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Literal, Self

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

log = logging.getLogger(__name__)

RegisterFunction = Literal["holding", "input"]

#: Most registers one read request may ask for (Modbus application protocol, 6.3/6.4).
MAX_REGISTERS_PER_READ = 125
MAX_ADDRESS = 0xFFFF

_SINGLE = re.compile(r"^(\d+)\s*:\s*(\d+)$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)\s*@\s*(\d+)$")


def parse_register_map(text: str) -> dict[int, int]:
    """Slot → register address from ``"1:0,2:1,3:2"`` or ``"1-12@0"`` (slots 1..12 at 0..11).

    Items are comma-separated and both forms mix: ``"1-4@0,5:10"``. Slots start at 1. A slot
    or a register used twice is an error, as is anything else that does not parse; the
    ValueError says which item and why.
    """
    if not text or not text.strip():
        raise ValueError("register map is empty; expected e.g. '1:0,2:1' or '1-12@0'")
    mapping: dict[int, int] = {}
    owner: dict[int, int] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            raise ValueError(f"register map {text!r} has an empty item")
        if single := _SINGLE.match(item):
            pairs = [(int(single[1]), int(single[2]))]
        elif ranged := _RANGE.match(item):
            first, last, base = int(ranged[1]), int(ranged[2]), int(ranged[3])
            if last < first:
                raise ValueError(
                    f"register map item {item!r}: slot range {first}-{last} runs backwards"
                )
            pairs = [(slot, base + slot - first) for slot in range(first, last + 1)]
        else:
            raise ValueError(
                f"register map item {item!r} is not SLOT:REGISTER or FIRST-LAST@REGISTER"
            )
        for slot, register in pairs:
            if slot < 1:
                raise ValueError(f"register map item {item!r}: slots start at 1, got {slot}")
            if register > MAX_ADDRESS:
                raise ValueError(
                    f"register map item {item!r}: register {register} is beyond {MAX_ADDRESS}"
                )
            if slot in mapping:
                raise ValueError(f"register map {text!r}: slot {slot} is mapped twice")
            if register in owner:
                raise ValueError(
                    f"register map {text!r}: register {register} is used by slots "
                    f"{owner[register]} and {slot}"
                )
            mapping[slot] = register
            owner[register] = slot
    return mapping


def plan_reads(addresses: set[int] | frozenset[int]) -> list[tuple[int, int]]:
    """``(start, count)`` requests covering ``addresses``: one per contiguous run.

    Gaps are never read across: meters commonly answer ILLEGAL ADDRESS for the whole request
    if any register in it is not implemented.
    """
    plan: list[tuple[int, int]] = []
    for address in sorted(addresses):
        if plan and plan[-1][0] + plan[-1][1] == address and plan[-1][1] < MAX_REGISTERS_PER_READ:
            plan[-1] = (plan[-1][0], plan[-1][1] + 1)
        else:
            plan.append((address, 1))
    return plan


class ModbusCurrentMeter:
    """A Modbus RTU current meter with one register per charging slot.

    :meth:`read` returns mA per slot, with None for every slot whose register could not be
    read this time. It never raises for communication problems: a monitor polls again
    anyway, and a charge tracker turns a lasting None into "unknown". If a request gets no
    answer at all, the rest of that read is skipped (all None) instead of waiting out the
    timeout once per request; the next read tries again, reopening the port if needed.

    ``timeout`` is per request attempt, ``retries`` the extra attempts pymodbus makes. The
    port is opened on the first read. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        port: str,
        *,
        registers: Mapping[int, int],
        unit: int = 1,
        baudrate: int = 9600,
        function: RegisterFunction = "input",
        scale: float = 1.0,
        timeout: float = 0.5,
        retries: int = 0,
    ) -> None:
        if not registers:
            raise ValueError("registers must map at least one slot to a register")
        for slot, address in registers.items():
            if not 0 <= address <= MAX_ADDRESS:
                raise ValueError(f"slot {slot}: register {address} is not 0-{MAX_ADDRESS}")
        if len(set(registers.values())) != len(registers):
            raise ValueError("two slots map to the same register")
        if not 1 <= unit <= 247:
            raise ValueError(
                f"unit must be 1-247 (0 is broadcast, which never answers), got {unit}"
            )
        if function not in ("holding", "input"):
            raise ValueError(f"function must be 'holding' or 'input', got {function!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")

        self.port = port
        self.unit = unit
        self.function: RegisterFunction = function
        self.scale = scale
        self.registers: dict[int, int] = dict(registers)
        self._plan = plan_reads(frozenset(self.registers.values()))
        self._failing = False
        self._refused: set[int] = set()  # starts of requests the meter answered with an error
        self._client = ModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            timeout=timeout,
            retries=retries,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.port} unit={self.unit} slots={len(self.registers)}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def requests_per_read(self) -> int:
        """How many Modbus requests one :meth:`read` sends."""
        return len(self._plan)

    def read(self) -> dict[int, int | None]:
        """Current in mA per slot; None where the read failed."""
        raw: dict[int, int] = {}
        for start, count in self._plan:
            try:
                values = self._read_registers(start, count)
            except ModbusException as exc:
                self._note_failure(f"registers {start}-{start + count - 1} failed ({exc})")
                break
            if values is not None:
                raw.update(zip(range(start, start + count), values, strict=True))
        else:
            if self._failing:
                log.info("meter %s unit %d answers again", self.port, self.unit)
                self._failing = False
        return {
            slot: round(raw[address] * self.scale) if address in raw else None
            for slot, address in self.registers.items()
        }

    def _note_failure(self, what: str) -> None:
        # A dead meter polled every second would log every second; warn once per outage.
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(
            level, "meter %s unit %d: %s; rest of this read skipped", self.port, self.unit, what
        )
        self._failing = True

    def close(self) -> None:
        """Close the serial port; a later :meth:`read` opens it again."""
        self._client.close()

    def _read_registers(self, start: int, count: int) -> list[int] | None:
        """The raw registers, or None if the meter answered with an error."""
        if self.function == "input":
            response = self._client.read_input_registers(start, count=count, device_id=self.unit)
        else:
            response = self._client.read_holding_registers(start, count=count, device_id=self.unit)
        if response.isError():
            # Usually a register map that does not fit the meter: warn once, not every poll.
            level = logging.DEBUG if start in self._refused else logging.WARNING
            self._refused.add(start)
            log.log(
                level,
                "meter %s unit %d: registers %d-%d answered %s",
                self.port,
                self.unit,
                start,
                start + count - 1,
                response,
            )
            return None
        self._refused.discard(start)
        if len(response.registers) != count:
            log.warning(
                "meter %s unit %d: asked for %d registers at %d, got %d",
                self.port,
                self.unit,
                count,
                start,
                len(response.registers),
            )
            return None
        return list(response.registers)
