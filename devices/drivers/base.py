"""Driver interface shared by all lock-board protocols.

A lock board sits on a serial bus (usually RS-485) and controls up to 16 locks. Drivers only
translate between frames on the wire and :class:`BoardStatus`; which lock belongs to which
locker is the business of the caller.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

LOCKS_PER_BOARD = 16

# Imported on first use of the registry rather than at module import, because these modules
# import this one (for LockBus and register_protocol): a top-level import would be circular.
_BUILTIN_PROTOCOL_MODULES: tuple[str, ...] = ("devices.drivers.kerong",)


@dataclass(frozen=True)
class BoardStatus:
    """Snapshot of one board: per lock, whether its door is latched and an item is present.

    Both tuples have one entry per lock, indexed by lock_index (lock 1 = index 0). Hook polarity
    has already been applied: ``door_closed[i]`` is True when the door is closed and latched.
    """

    board: int
    door_closed: tuple[bool, ...]
    present: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.door_closed) != LOCKS_PER_BOARD or len(self.present) != LOCKS_PER_BOARD:
            raise ValueError(f"BoardStatus needs {LOCKS_PER_BOARD} entries per tuple")


class LockBoardError(Exception):
    """The lock board could not be reached or answered with something unusable."""


class LockBoardTimeout(LockBoardError):
    """The board did not answer within the timeout (wrong address, unpowered, cable...)."""


class LockBus(abc.ABC):
    """One serial bus carrying one or more lock boards; the board is chosen per call."""

    @abc.abstractmethod
    def status(self, board: int) -> BoardStatus:
        """Poll a board and return its status."""

    @abc.abstractmethod
    def unlock(self, board: int, lock_index: int) -> BoardStatus:
        """Unlock one lock and return the board status reported in reply."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the serial port. Calling it more than once is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


LockBusFactory = Callable[..., LockBus]
_F = TypeVar("_F", bound=LockBusFactory)

_PROTOCOLS: dict[str, LockBusFactory] = {}


def register_protocol(name: str) -> Callable[[_F], _F]:
    """Register a LockBus factory under ``name``.

    The factory is called as ``factory(port, invert_hook=..., timeout=...)``.
    """

    def decorator(factory: _F) -> _F:
        existing = _PROTOCOLS.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"lock-board protocol {name!r} is already registered to {existing!r}")
        _PROTOCOLS[name] = factory
        return factory

    return decorator


def _load_builtin_protocols() -> None:
    for module in _BUILTIN_PROTOCOL_MODULES:
        importlib.import_module(module)


def known_protocols() -> list[str]:
    """Names accepted by :func:`open_lock_bus`, sorted."""
    _load_builtin_protocols()
    return sorted(_PROTOCOLS)


def open_lock_bus(
    protocol: str, port: str, *, invert_hook: bool = False, timeout: float = 0.25
) -> LockBus:
    """Open ``port`` (device path or pyserial URL) with the driver registered as ``protocol``."""
    _load_builtin_protocols()
    factory = _PROTOCOLS.get(protocol)
    if factory is None:
        known = ", ".join(sorted(_PROTOCOLS)) or "(none)"
        raise ValueError(f"unknown lock-board protocol {protocol!r}; known protocols: {known}")
    return factory(port, invert_hook=invert_hook, timeout=timeout)
