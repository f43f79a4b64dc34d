"""The channel layer's Redis sockets wait longer than its blocking pop.

With redis-py 8 every socket read times out after 5 s by default, exactly as long as
channels_redis blocks in BZPOPMIN; an idle consumer (a bank worker's connection between
commands) then raced the pop and was torn down with a TimeoutError.
"""

from __future__ import annotations

from channels.layers import get_channel_layer


def test_redis_read_timeout_is_longer_than_the_layers_blocking_pop() -> None:
    layer = get_channel_layer()
    connection = layer.create_pool(0).make_connection()
    timeout = connection.socket_timeout
    assert timeout is None or timeout > layer.brpop_timeout
