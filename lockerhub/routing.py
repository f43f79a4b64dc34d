"""WebSocket routes. Each consumer authenticates its own connection (device token, session)."""

from django.urls import path

from devices.consumers import DeviceConsumer

websocket_urlpatterns = [
    path("ws/devices/<str:code>/", DeviceConsumer.as_asgi()),
]
