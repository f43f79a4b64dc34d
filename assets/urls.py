"""Web pages of this app (server-rendered)."""

from django.urls import path

from assets import views

app_name = "assets"
urlpatterns = [
    path("reports/", views.index, name="reports"),
    path("reports/<slug:slug>/", views.report_page, name="report"),
    path("reports/<slug:slug>.csv", views.report_csv, name="report_csv"),
]
