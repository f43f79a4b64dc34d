"""Report endpoints of the REST API (/api/reports/...)."""

from django.urls import path

from assets.report_api import REPORT_VIEWS, ReportIndexView

urlpatterns = [
    path("", ReportIndexView.as_view(), name="report-api-index"),
    *(
        path(f"{slug}/", view.as_view(), name=f"report-api-{slug}")
        for slug, view in REPORT_VIEWS.items()
    ),
]
