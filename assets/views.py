"""Report pages for facility managers: parse the filter, call one report, render it (or its CSV)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString

from assets import charts
from assets.report_forms import ReportFilterForm
from assets.reports import REPORTS, WEEKDAYS, Report, ReportSpec

VIEW_REPORTS = "lockerhub.view_reports"
# Spreadsheet programs run cells that start with these as formulas.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def reports_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors go to the login page; signed-in users without the permission get 403."""
    return login_required(permission_required(VIEW_REPORTS, raise_exception=True)(view))


def _spec(slug: str) -> ReportSpec:
    try:
        return REPORTS[slug]
    except KeyError:
        raise Http404(f"No report called {slug!r}.") from None


def build_report(spec: ReportSpec, form: ReportFilterForm) -> Report:
    """Run ``spec`` for a valid filter form."""
    return spec.build(form.report_filter(), **form.options(spec.options))


@reports_required
def index(request: HttpRequest) -> HttpResponse:
    form = ReportFilterForm.from_query(request.GET)
    status = 200 if form.is_valid() else 400
    return render(
        request,
        "reports/index.html",
        {"form": form, "reports": REPORTS.values(), "query": request.GET.urlencode()},
        status=status,
    )


@reports_required
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    spec = _spec(slug)
    if request.GET.get("format") == "csv":
        return report_csv(request, slug)
    form = ReportFilterForm.from_query(request.GET)
    if not form.is_valid():
        return render(
            request,
            "reports/report.html",
            {"form": form, "spec": spec, "reports": REPORTS.values()},
            status=400,
        )
    report = build_report(spec, form)
    query = request.GET.copy()
    query.pop("format", None)
    return render(
        request,
        "reports/report.html",
        {
            "form": form,
            "spec": spec,
            "report": report,
            "reports": REPORTS.values(),
            "chart": chart_for(report),
            "summary": [
                (key.replace("_", " ").capitalize(), value) for key, value in report.summary.items()
            ],
            "table": [
                [_display(row[column.key]) for column in report.columns] for row in report.rows
            ],
            "query": query.urlencode(),
        },
    )


@reports_required
def report_csv(request: HttpRequest, slug: str) -> HttpResponse:
    spec = _spec(slug)
    form = ReportFilterForm.from_query(request.GET)
    if not form.is_valid():
        errors = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in form.errors.items()
        )
        return HttpResponse(
            f"Invalid report filter. {errors}\n", status=400, content_type="text/plain"
        )
    report = build_report(spec, form)
    cleaned = form.cleaned_data
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{slug}-{cleaned["start"]:%Y%m%d}-{cleaned["end"]:%Y%m%d}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow([column.label for column in report.columns])
    for row in report.rows:
        writer.writerow([csv_cell(row[column.key]) for column in report.columns])
    return response


def _display(value: object) -> object:
    # ISO dates in tables, as in the CSV and the API: one spelling everywhere.
    return value.isoformat() if isinstance(value, date) else value


def csv_cell(value: object) -> object:
    """A value as a spreadsheet should see it: never a formula, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def chart_for(report: Report) -> SafeString | None:
    """The chart that suits each report; None where the table says it all."""
    rows = report.rows
    if not rows:
        return None
    match report.slug:
        case "takes-per-day":
            return charts.bar_chart(
                [f"{row['day']:%d %b}" for row in rows],
                [("Takes", [row["takes"] for row in rows])],
                title=report.title,
            )
        case "hour-of-week":
            return charts.heat_map(
                list(WEEKDAYS),
                [f"{h:02d}" for h in range(24)],
                [[row[f"h{h:02d}"] for h in range(24)] for row in rows],
                title=report.title,
            )
        case "peaks":
            return charts.bar_chart(
                [row["bank"] for row in rows],
                [
                    ("Peak out at once", [row["peak"] for row in rows]),
                    ("Slots", [row["slots"] for row in rows]),
                ],
                title=report.title,
            )
        case "checkout-length":
            return charts.bar_chart(
                [row["asset_type"] for row in rows],
                [
                    ("Mean", [row["mean_minutes"] for row in rows]),
                    ("Median", [row["median_minutes"] for row in rows]),
                ],
                title=report.title,
                unit=" min",
            )
        case "overdue-rate":
            return charts.bar_chart(
                [f"{row['bank']} {row['asset_type']}" for row in rows],
                [("Overdue %", [row["overdue_rate"] for row in rows])],
                title=report.title,
                unit=" %",
            )
        case "denied-taps":
            return charts.bar_chart(
                [row["label"] for row in rows],
                [("Taps", [row["taps"] for row in rows])],
                title=report.title,
            )
        case "charge-faults":
            return charts.bar_chart(
                [f"{row['bank']} #{row['slot']}" for row in rows],
                [("Faults", [row["faults"] for row in rows])],
                title=report.title,
            )
        case "slot-utilization":
            return charts.bar_chart(
                [f"{row['bank']} #{row['slot']}" for row in rows],
                [("Utilization", [row["utilization"] for row in rows])],
                title=report.title,
                unit=" %",
            )
        case "top-users":
            return charts.bar_chart(
                [row["name"] for row in rows],
                [("Takes", [row["takes"] for row in rows])],
                title=report.title,
            )
        case "right-sizing":
            return charts.bar_chart(
                [f"{row['bank']} {row['asset_type']}" for row in rows],
                [
                    ("Needed", [row["needed"] for row in rows]),
                    ("Current", [row["current"] for row in rows]),
                ],
                title=report.title,
            )
    return None
