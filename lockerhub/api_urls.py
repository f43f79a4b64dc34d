"""REST API routes (/api/...). Report endpoints live under /api/reports/ (assets.report_api_urls)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from access import api as access_api
from assets import api as assets_api
from devices import api as devices_api
from lockerhub import api as lockerhub_api

router = DefaultRouter()
router.register("employees", access_api.EmployeeViewSet, basename="employee")
router.register("badges", access_api.BadgeViewSet, basename="badge")
router.register("shifts", access_api.ShiftViewSet, basename="shift")
router.register("shift-assignments", access_api.ShiftAssignmentViewSet, basename="shiftassignment")
router.register("access-rules", access_api.AccessRuleViewSet, basename="accessrule")
router.register("access-events", access_api.AccessEventViewSet, basename="accessevent")
router.register("sites", devices_api.SiteViewSet, basename="site")
router.register("banks", devices_api.LockerBankViewSet, basename="lockerbank")
router.register("slots", devices_api.SlotViewSet, basename="slot")
router.register("asset-types", assets_api.AssetTypeViewSet, basename="assettype")
router.register("assets", assets_api.AssetViewSet, basename="asset")
router.register("checkouts", assets_api.CheckoutViewSet, basename="checkout")
router.register("alerts", lockerhub_api.AlertViewSet, basename="alert")
router.register("audit-events", lockerhub_api.AuditEventViewSet, basename="auditevent")
router.register("api-keys", lockerhub_api.ApiKeyViewSet, basename="apikey")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include(router.urls)),
]
