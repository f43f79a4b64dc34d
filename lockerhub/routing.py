"""WebSocket routes. Each consumer authenticates its own connection (device token, session)."""

websocket_urlpatterns: list = []
