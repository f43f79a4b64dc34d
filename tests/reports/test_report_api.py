"""The report API returns the same tables as the pages, documented in the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from assets.reports import REPORTS
from tests.reports.conftest import History, sign_in


@pytest.fixture
def fm(client: Client, facility_manager: User) -> Client:
    return sign_in(client, facility_manager)


def test_report_endpoint_returns_columns_rows_and_summary(fm: Client, history: History) -> None:
    world = history.world
    response = fm.get(
        "/api/reports/right-sizing/",
        {"start": "2026-03-28", "end": "2026-03-30", "bank": world.bank.pk, "margin": "0.5"},
    )
    body = response.json()

    assert response.status_code == 200
    assert body["report"] == "right-sizing"
    assert (body["start"], body["end"], body["bank"], body["site"]) == (
        "2026-03-28",
        "2026-03-30",
        world.bank.pk,
        None,
    )
    assert body["columns"][0] == {"key": "site", "label": "Site"}
    # Scanners p95 2 * 1.5 = 3 → 3 (has 3); tablets 1 * 1.5 → 2 (has 1).
    assert [(r["asset_type"], r["needed"], r["change"]) for r in body["rows"]] == [
        ("Scanner", 3, 0),
        ("Tablet", 2, 1),
    ]
    assert body["summary"] == {"margin": 0.5, "percentile": 95}


def test_dates_come_back_as_iso_strings(fm: Client, history: History) -> None:
    rows = fm.get("/api/reports/takes-per-day/?start=2026-03-28&end=2026-03-30").json()["rows"]
    assert rows == [
        {"day": "2026-03-28", "takes": 2},
        {"day": "2026-03-29", "takes": 3},
        {"day": "2026-03-30", "takes": 2},
    ]


def test_index_lists_every_report_with_its_url(fm: Client, db) -> None:
    body = fm.get("/api/reports/").json()
    assert [entry["slug"] for entry in body] == list(REPORTS)
    assert body[-1]["url"] == "http://testserver/api/reports/right-sizing/"
    assert body[-1]["options"] == ["margin"]


def test_schema_documents_every_report_endpoint_without_warnings(capsys) -> None:
    from drf_spectacular.generators import SchemaGenerator

    from assets import report_api_urls

    schema = SchemaGenerator(patterns=[*report_api_urls.urlpatterns]).get_schema(public=True)
    captured = capsys.readouterr()

    assert "Warning" not in captured.err + captured.out
    assert "Error" not in captured.err + captured.out
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert operations == {"reports_list"} | {
        f"reports_{slug.replace('-', '_')}" for slug in REPORTS
    }
    margin = [p["name"] for p in schema["paths"]["/right-sizing/"]["get"]["parameters"]]
    assert margin == ["asset_type", "bank", "end", "margin", "site", "start"]
