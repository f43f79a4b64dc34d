"""WebSocket routes. Each consumer authenticates its own connection (device token, session)."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from devices.consumers import DashboardConsumer, DeviceConsumer, KioskConsumer


def browser(consumer):
    """Routes opened by web pages: only from our own origin, with the session and cookies read.

    The bank worker's route stays outside: it sends no Origin and authenticates by header token.
    """
    return AllowedHostsOriginValidator(AuthMiddlewareStack(consumer))


websocket_urlpatterns = [
    path("ws/devices/<str:code>/", DeviceConsumer.as_asgi()),
    path("ws/kiosk/<str:code>/", browser(KioskConsumer.as_asgi())),
    path("ws/dashboard/", browser(DashboardConsumer.as_asgi())),
]
