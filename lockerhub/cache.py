"""The cache, on Redis, that never takes a page down with it.

The cache only ever saves work (sign-in rate limits, fragments): with Redis away a read is a
miss and a write is dropped, with one warning, instead of a 500 on the sign-in page.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_WARN_EVERY = 60.0


class ResilientRedisCache(RedisCache):
    """Django's Redis cache, answering as an empty cache while Redis is unreachable."""

    _warned_at = 0.0

    def _down(self, operation: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - ResilientRedisCache._warned_at > _WARN_EVERY:
            ResilientRedisCache._warned_at = now
            logger.warning("cache unavailable (%s: %s); carrying on without it", operation, error)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except _DOWN as error:
            self._down("get", error)
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict:
        try:
            return super().get_many(keys, version)
        except _DOWN as error:
            self._down("get_many", error)
            return {}

    def set(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().set(*args, **kwargs)
        except _DOWN as error:
            self._down("set", error)

    def add(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().add(*args, **kwargs)
        except _DOWN as error:
            self._down("add", error)
            return True

    def set_many(self, *args: Any, **kwargs: Any) -> list:
        try:
            return super().set_many(*args, **kwargs)
        except _DOWN as error:
            self._down("set_many", error)
            return []

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().delete(*args, **kwargs)
        except _DOWN as error:
            self._down("delete", error)
            return False

    def delete_many(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().delete_many(*args, **kwargs)
        except _DOWN as error:
            self._down("delete_many", error)

    def touch(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().touch(*args, **kwargs)
        except _DOWN as error:
            self._down("touch", error)
            return False

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        try:
            return super().incr(key, delta, version)
        except _DOWN as error:
            self._down("incr", error)
            return delta

    def has_key(self, key: str, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except _DOWN as error:
            self._down("has_key", error)
            return False

    def clear(self) -> None:
        try:
            super().clear()
        except _DOWN as error:
            self._down("clear", error)
