"""Report endpoints (/api/reports/...): the same reports and filter as the pages, as JSON."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from assets.report_forms import ReportFilterForm
from assets.reports import REPORTS, ReportSpec

VIEW_REPORTS = "lockerhub.view_reports"


class CanViewReports(BasePermission):
    """Facility managers (and administrators): the ``lockerhub.view_reports`` permission."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(VIEW_REPORTS))


class ReportColumnSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()


class ReportSerializer(serializers.Serializer):
    report = serializers.CharField(help_text="The report's slug.")
    title = serializers.CharField()
    start = serializers.DateField(help_text="First local day covered.")
    end = serializers.DateField(help_text="Last local day covered (inclusive).")
    site = serializers.IntegerField(allow_null=True)
    bank = serializers.IntegerField(allow_null=True)
    asset_type = serializers.IntegerField(allow_null=True)
    columns = ReportColumnSerializer(many=True)
    rows = serializers.ListField(
        child=serializers.DictField(), help_text="One object per table row, keyed by column key."
    )
    summary = serializers.DictField()
    notes = serializers.ListField(child=serializers.CharField())


FILTER_PARAMETERS = [
    OpenApiParameter(
        "start", OpenApiTypes.DATE, description="First local day (default: 30 days ago)."
    ),
    OpenApiParameter(
        "end", OpenApiTypes.DATE, description="Last local day, inclusive (default: today)."
    ),
    OpenApiParameter("site", OpenApiTypes.INT, description="Only this site (id)."),
    OpenApiParameter("bank", OpenApiTypes.INT, description="Only this bank (id)."),
    OpenApiParameter("asset_type", OpenApiTypes.INT, description="Only this asset type (id)."),
]
OPTION_PARAMETERS = {
    "margin": OpenApiParameter(
        "margin",
        OpenApiTypes.DOUBLE,
        description="Spare capacity on top of the p95 peak (0.2 = 20 %).",
    ),
    "limit": OpenApiParameter("limit", OpenApiTypes.INT, description="How many users (1-500)."),
    "max_takes": OpenApiParameter(
        "max_takes", OpenApiTypes.INT, description="An asset taken at most this often is idle."
    ),
}
ERROR = inline_serializer("ReportFilterError", {"detail": serializers.CharField(required=False)})


class ReportView(APIView):
    """One report as JSON. Subclasses name the report in ``spec``."""

    permission_classes = [CanViewReports]
    spec: ReportSpec

    def get(self, request: Request) -> Response:
        form = ReportFilterForm.from_query(request.query_params)
        if not form.is_valid():
            raise ValidationError({field: list(errors) for field, errors in form.errors.items()})
        report = self.spec.build(form.report_filter(), **form.options(self.spec.options))
        data = form.cleaned_data
        return Response(
            {
                "report": report.slug,
                "title": report.title,
                "start": data["start"],
                "end": data["end"],
                "site": data["site"].pk if data["site"] else None,
                "bank": data["bank"].pk if data["bank"] else None,
                "asset_type": data["asset_type"].pk if data["asset_type"] else None,
                "columns": [{"key": c.key, "label": c.label} for c in report.columns],
                "rows": report.rows,
                "summary": report.summary,
                "notes": report.notes,
            }
        )


def _report_view(spec: ReportSpec) -> type[ReportView]:
    view: Any = type(
        f"{spec.slug.title().replace('-', '')}ReportView",
        (ReportView,),
        {"spec": spec, "__doc__": spec.build.__doc__},
    )
    return extend_schema_view(
        get=extend_schema(
            operation_id=f"reports_{spec.slug.replace('-', '_')}",
            summary=spec.title,
            description=spec.description,
            tags=["reports"],
            parameters=FILTER_PARAMETERS + [OPTION_PARAMETERS[name] for name in spec.options],
            responses={200: ReportSerializer, 400: ERROR, 401: ERROR, 403: ERROR},
        )
    )(view)


REPORT_VIEWS: dict[str, type[ReportView]] = {
    slug: _report_view(spec) for slug, spec in REPORTS.items()
}


class ReportIndexView(APIView):
    """The reports there are, with their URLs."""

    permission_classes = [CanViewReports]

    @extend_schema(
        operation_id="reports_list",
        tags=["reports"],
        responses={
            200: inline_serializer(
                "ReportIndexEntry",
                {
                    "slug": serializers.CharField(),
                    "title": serializers.CharField(),
                    "description": serializers.CharField(),
                    "url": serializers.URLField(),
                    "options": serializers.ListField(child=serializers.CharField()),
                },
                many=True,
            ),
            401: ERROR,
            403: ERROR,
        },
    )
    def get(self, request: Request) -> Response:
        return Response(
            [
                {
                    "slug": spec.slug,
                    "title": spec.title,
                    "description": spec.description,
                    "url": reverse(f"report-api-{spec.slug}", request=request),
                    "options": list(spec.options),
                }
                for spec in REPORTS.values()
            ]
        )
