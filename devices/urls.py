"""Web pages of this app (server-rendered): the kiosk screen and the live dashboard."""

from django.urls import path

from devices import views

app_name = "devices"
urlpatterns = [
    path("kiosk/pair/<str:code>/", views.kiosk_pair, name="kiosk-pair"),
    path("kiosk/<str:code>/", views.kiosk, name="kiosk"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/kiosks/", views.kiosks, name="kiosks"),
    path("dashboard/kiosks/<int:pk>/revoke/", views.kiosk_revoke, name="kiosk-revoke"),
    path("dashboard/slots/<int:pk>/open/", views.slot_remote_open, name="slot-remote-open"),
    path("dashboard/slots/<int:pk>/service/", views.slot_service, name="slot-service"),
    path(
        "dashboard/alerts/<int:pk>/acknowledge/",
        views.alert_acknowledge,
        name="alert-acknowledge",
    ),
]
