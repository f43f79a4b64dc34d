"""Web pages of this app (server-rendered)."""

from django.urls import path  # noqa: F401

app_name = "access"
urlpatterns: list = []
