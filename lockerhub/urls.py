"""Top-level URLs. Each app owns its pages in its own urls.py; the API and SCIM live under /api/ and /scim/v2/."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from lockerhub import views as lockerhub_views


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", lockerhub_views.home, name="home"),  # each role's landing page
    # Before admin.site.urls: the admin signs in through allauth (rate limit, second factor).
    path("admin/login/", lockerhub_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("healthz", healthz, name="healthz"),
    path("api/reports/", include("assets.report_api_urls")),
    path("api/", include("lockerhub.api_urls")),
    path("scim/v2/", include("lockerhub.scim_urls")),
    path("", include("devices.urls")),  # /kiosk/<code>/, /dashboard/
    path("", include("access.urls")),  # /people/
    path("", include("assets.urls")),  # /reports/
]
