"""Emulator of a Modbus RTU multi-channel current meter: pymodbus's own server on a pty.

The host side (``.port``) is a pty slave, so the real driver
(:class:`devices.drivers.modbus_meter.ModbusCurrentMeter`) opens it like a USB-RS485 adapter
and every byte goes through pymodbus's RTU framing on both ends. Run standalone for manual
testing::

    python -m devices.emulators.modbus_meter --unit 1 --set 0=812 --set 1=95

Why two ptys: pymodbus's serial server opens its port *by path* (pyserial's
``serial_for_url(path, exclusive=True)``), and so does the client. A pty master has no path
(reopening ``/proc/self/fd/N`` of one opens a new pty), so one pty cannot give both ends a
path. The emulator therefore makes two ptys, raw mode, puts the server on the slave of one
and the host on the slave of the other, and copies bytes between the two masters: a
null-modem cable, as ``socat pty,raw pty,raw`` would make.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import threading
import tty
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

logger = logging.getLogger(__name__)

_START_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0


class ModbusMeterEmulator:
    """A current meter with ``register_count`` registers (addresses 0..n-1) behind a pty.

    Every register reads 0 until :meth:`set_current`; they answer both "read holding
    registers" (0x03) and "read input registers" (0x04), so the driver works with either
    ``function``. Registers are read-only; writes and addresses past the end get Modbus
    exception responses. pymodbus's server answers requests for another unit id with a
    DEVICE FAILURE exception, where a real meter on a shared bus would stay silent.

    The server runs in a background thread with its own asyncio loop. ``.port`` is valid
    from construction on; :meth:`start` serves, :meth:`stop` closes both ptys (the host then
    sees the port vanish, as with an unplugged adapter) and is safe to call twice.
    """

    def __init__(self, *, unit: int = 1, register_count: int = 64, baudrate: int = 9600) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit must be 1-247, got {unit}")
        if not 1 <= register_count <= 0x10000:
            raise ValueError(f"register_count must be 1-65536, got {register_count}")
        self.unit = unit
        self.register_count = register_count
        self.baudrate = baudrate

        self._values = [0] * register_count
        self._values_lock = threading.Lock()
        self._requests = 0

        # (master, slave) of the host's pty and of the server's pty. The slave fds stay open
        # for the emulator's lifetime: with no slave open, reads on a master fail with EIO.
        self._host_master, self._host_slave = os.openpty()
        self._server_master, self._server_slave = os.openpty()
        for fd in (self._host_slave, self._server_slave):
            # Raw before anyone opens the port, so no byte is echoed or taken as a control
            # character (0x03 is ^C, 0x11/0x13 are XON/XOFF) in the meantime.
            tty.setraw(fd)
        for fd in (self._host_master, self._server_master):
            os.set_blocking(fd, False)
        self.port: str = os.ttyname(self._host_slave)
        self._server_port = os.ttyname(self._server_slave)

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lifecycle = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.port} unit={self.unit}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; returns once the server listens. Raises if it could not start."""
        with self._lifecycle:
            if self._closed:
                raise RuntimeError("emulator has been stopped; create a new one")
            if self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=self._run, name=f"modbus-meter-emulator {self.port}", daemon=True
            )
            self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"Modbus meter emulator did not start within {_START_TIMEOUT} s")
        if self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"Modbus meter emulator failed to start: {error}") from error
        return self

    def stop(self) -> None:
        """Stop serving and close the ptys. Safe to call more than once."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            thread, loop, stopping = self._thread, self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=_STOP_TIMEOUT)
            if thread.is_alive():
                logger.warning("%r: server thread did not end within %s s", self, _STOP_TIMEOUT)
        for fd in (self._host_master, self._host_slave, self._server_master, self._server_slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    def set_current(self, register: int, ma: int) -> None:
        """Set the raw value of one register; the next read sees it."""
        if not 0 <= register < self.register_count:
            raise ValueError(f"register must be 0-{self.register_count - 1}, got {register}")
        if not 0 <= ma <= 0xFFFF:
            raise ValueError(f"a register holds 0-65535, got {ma}")
        with self._values_lock:
            self._values[register] = ma

    def current(self, register: int) -> int:
        """The raw value of one register."""
        with self._values_lock:
            return self._values[register]

    @property
    def requests(self) -> int:
        """How many read requests the server has answered from the registers."""
        return self._requests

    # -- server thread ---------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            logger.exception("%r: server failed", self)
        finally:
            self._ready.set()  # never leave start() waiting
            # pymodbus may leave request handlers scheduled; end them before the loop goes.
            if pending := asyncio.all_tasks(loop):
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        with self._lifecycle:
            if self._closed:
                return
            self._loop, self._stopping = loop, stopping

        loop.add_reader(self._host_master, self._relay, self._host_master, self._server_master)
        loop.add_reader(self._server_master, self._relay, self._server_master, self._host_master)
        device = SimDevice(
            id=self.unit,
            simdata=[
                SimData(
                    address=0,
                    count=self.register_count,
                    values=0,
                    datatype=DataType.REGISTERS,
                    readonly=True,
                )
            ],
            action=self._on_access,
        )
        server = ModbusSerialServer(
            device, framer=FramerType.RTU, port=self._server_port, baudrate=self.baudrate
        )
        try:
            await server.serve_forever(background=True)
            self._ready.set()
            await stopping.wait()
        finally:
            await server.shutdown()
            loop.remove_reader(self._host_master)
            loop.remove_reader(self._server_master)

    def _relay(self, source: int, sink: int) -> None:
        try:
            data = os.read(source, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.debug("%r: relay read failed: %s", self, exc)
            return
        try:
            os.write(sink, data)
        except BlockingIOError:
            # The other end is not reading and its buffer is full; a real line loses the
            # bytes too, and blocking here would stall the server.
            logger.debug("%r: dropped %d bytes, pty buffer full", self, len(data))

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> None:
        # Called by pymodbus before it answers from ``registers``; fill in the live values.
        if set_values is not None:
            return
        offset = address - start_address
        with self._values_lock:
            registers[offset : offset + count] = self._values[address : address + count]
        self._requests += 1


def _register_value(text: str) -> tuple[int, int]:
    try:
        register, value = (int(part) for part in text.split("=", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected REGISTER=VALUE, got {text!r}") from None
    return register, value


def main(argv: Sequence[str] | None = None) -> int:
    """Serve an emulated meter on a pty until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.emulators.modbus_meter",
        description="Emulate a Modbus RTU current meter on a pty (pymodbus server).",
    )
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    parser.add_argument("--registers", type=int, default=64, help="register count (default 64)")
    parser.add_argument(
        "--set",
        type=_register_value,
        action="append",
        default=[],
        metavar="REGISTER=VALUE",
        help="initial raw register value; repeatable",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emulator = ModbusMeterEmulator(unit=args.unit, register_count=args.registers)
    for register, value in args.set:
        emulator.set_current(register, value)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with emulator:
        print(f"Modbus meter unit {args.unit} on {emulator.port}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            # Short waits keep the main thread where signal handlers can run.
            while not done.wait(0.5):
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
