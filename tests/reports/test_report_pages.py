"""Report pages: filter form, chart, table and CSV export; bad filters get a clear 400."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.test import Client

from assets.models import UsageByDay
from assets.reports import REPORTS
from tests.reports.conftest import History, sign_in

PERIOD = "start=2026-03-28&end=2026-03-30"


@pytest.fixture
def fm(client: Client, facility_manager: User) -> Client:
    return sign_in(client, facility_manager)


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_report_page_shows_an_accessible_chart_and_the_table(fm: Client, history: History) -> None:
    response = fm.get(f"/reports/takes-per-day/?{PERIOD}")
    html = response.content.decode()

    assert response.status_code == 200
    assert '<svg class="chart" role="img"' in html
    assert "<title>29 Mar: 3</title>" in html  # the Sunday bar says its own value
    assert '<th scope="col">Takes</th>' in html
    assert '<label for="id_start">From</label>' in html
    assert '<th scope="row">2026-03-29</th><td>3</td>' in html
    assert 'href="/reports/takes-per-day.csv?start=2026-03-28&amp;end=2026-03-30"' in html


def test_heat_map_page_draws_one_cell_per_weekday_hour(fm: Client, history: History) -> None:
    html = fm.get(f"/reports/hour-of-week/?{PERIOD}").content.decode()
    assert html.count("<rect") == 7 * 24
    assert "<title>Sun 03: 1</title>" in html
    assert "<title>Sun 02: 0</title>" in html  # the hour that did not exist that night


def test_every_table_exports_as_csv(fm: Client, history: History) -> None:
    for slug in REPORTS:
        response = fm.get(f"/reports/{slug}.csv?{PERIOD}")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert (
            response["Content-Disposition"]
            == f'attachment; filename="{slug}-20260328-20260330.csv"'
        )
        header = rows_of(response)[0]
        assert header, slug


def test_csv_holds_the_same_figures_as_the_table(fm: Client, history: History) -> None:
    response = fm.get(f"/reports/overdue-rate/?{PERIOD}&format=csv")
    assert rows_of(response) == [
        ["Bank", "Asset type", "Takes", "Overdue", "Overdue %"],
        ["BANK-A", "Scanner", "5", "1", "20.0"],
        ["BANK-A", "Tablet", "1", "0", "0.0"],
        ["BANK-B", "Scanner", "1", "1", "100.0"],
    ]
    per_day = rows_of(fm.get(f"/reports/takes-per-day.csv?{PERIOD}"))
    assert per_day[1:] == [["2026-03-28", "2"], ["2026-03-29", "3"], ["2026-03-30", "2"]]


def test_csv_cells_never_start_a_formula(fm: Client, history: History) -> None:
    ana = history.world.ana
    ana.first_name = '=HYPERLINK("http://evil")'
    ana.save()
    rows = rows_of(fm.get(f"/reports/top-users.csv?{PERIOD}"))
    assert rows[1][1] == '\'=HYPERLINK("http://evil") Test'


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            "start=2026-03-30&end=2026-03-28",
            "end",
            "The end date must not be before the start date.",
        ),
        ("start=yesterday", "start", "Enter a valid date."),
        ("start=2020-01-01&end=2026-03-30", "start", "A report covers at most 1098 days."),
        ("bank=999999", "bank", "Select a valid choice."),
        ("margin=-1", "margin", "Ensure this value is greater than or equal to 0."),
        ("limit=0", "limit", "Ensure this value is greater than or equal to 1."),
    ],
)
def test_bad_filters_get_a_clear_error_and_change_nothing(
    fm: Client, history: History, query: str, field: str, message: str
) -> None:
    before = list(UsageByDay.objects.order_by("pk").values())

    page = fm.get(f"/reports/right-sizing/?{query}")
    assert page.status_code == 400
    assert message in page.content.decode()
    assert "<table" not in page.content.decode()

    export = fm.get(f"/reports/right-sizing.csv?{query}")
    assert export.status_code == 400
    assert export["Content-Type"] == "text/plain"
    assert field in export.content.decode()

    api = fm.get(f"/api/reports/right-sizing/?{query}")
    assert api.status_code == 400
    assert message in str(api.json())

    assert list(UsageByDay.objects.order_by("pk").values()) == before


def test_a_bank_of_another_site_is_refused(fm: Client, history: History) -> None:
    from devices.models import Site

    elsewhere = Site.objects.create(name="Elsewhere", time_zone="America/New_York")
    response = fm.get(f"/reports/peaks/?site={elsewhere.pk}&bank={history.world.bank.pk}")
    assert response.status_code == 400
    assert "Bank BANK-A is not at Elsewhere." in response.content.decode()


def test_unknown_report_is_404(fm: Client, db) -> None:
    assert fm.get("/reports/no-such-report/").status_code == 404
    assert fm.get("/reports/no-such-report.csv").status_code == 404


@pytest.mark.parametrize("slug", list(REPORTS))
def test_report_pages_run_a_fixed_number_of_queries(
    fm: Client, history: History, slug: str, django_assert_max_num_queries
) -> None:
    world = history.world
    query = f"{PERIOD}&site={world.site.pk}&asset_type={world.scanner.pk}"
    fm.get(f"/reports/{slug}/?{query}")  # warm the session
    # Session, user and permissions (4), the filter's lookups (2), the form's three selects,
    # and at most five report queries, however many days, banks or slots there are.
    with django_assert_max_num_queries(14):
        assert fm.get(f"/reports/{slug}/?{query}").status_code == 200
    with django_assert_max_num_queries(11):
        assert fm.get(f"/reports/{slug}.csv?{query}").status_code == 200
