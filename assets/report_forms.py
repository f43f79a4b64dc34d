"""The one parser of report filters, shared by the report pages and the report API."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone

from assets.models import AssetType
from assets.reports import (
    DEFAULT_IDLE_MAX_TAKES,
    DEFAULT_MARGIN,
    DEFAULT_TOP_USERS,
    ReportFilter,
)
from devices.models import LockerBank, Site

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


def default_range(today: date | None = None) -> tuple[date, date]:
    today = today or timezone.localdate()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


class ReportFilterForm(forms.Form):
    """Date range (local days, inclusive), place, asset type and the per-report options."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    site = forms.ModelChoiceField(
        Site.objects.order_by("name"), required=False, empty_label="All sites"
    )
    bank = forms.ModelChoiceField(
        LockerBank.objects.order_by("code"), required=False, empty_label="All banks"
    )
    asset_type = forms.ModelChoiceField(
        AssetType.objects.order_by("name"),
        required=False,
        empty_label="All types",
        label="Asset type",
    )
    margin = forms.FloatField(
        min_value=0,
        max_value=5,
        required=False,
        label="Margin (0.2 = 20 %)",
        help_text="Right-sizing: spare capacity on top of the 95th percentile daily peak.",
    )
    limit = forms.IntegerField(min_value=1, max_value=500, required=False, label="How many users")
    max_takes = forms.IntegerField(
        min_value=0,
        max_value=10_000,
        required=False,
        label="Idle: at most this many takes",
    )

    @classmethod
    def from_query(cls, query: QueryDict, *, today: date | None = None) -> ReportFilterForm:
        """A bound form: the query's values over the defaults (the last 30 days)."""
        start, end = default_range(today)
        data: dict[str, Any] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "margin": DEFAULT_MARGIN,
            "limit": DEFAULT_TOP_USERS,
            "max_takes": DEFAULT_IDLE_MAX_TAKES,
        }
        for name in cls.base_fields:
            if name in query:
                data[name] = query[name]
        return cls(data)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if start > end:
                self.add_error("end", "The end date must not be before the start date.")
            elif (end - start).days + 1 > MAX_DAYS:
                self.add_error("start", f"A report covers at most {MAX_DAYS} days.")
        site, bank = cleaned.get("site"), cleaned.get("bank")
        if site and bank and bank.site_id != site.pk:
            self.add_error("bank", f"Bank {bank.code} is not at {site.name}.")
        for name, default in (
            ("margin", DEFAULT_MARGIN),
            ("limit", DEFAULT_TOP_USERS),
            ("max_takes", DEFAULT_IDLE_MAX_TAKES),
        ):
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = default
        return cleaned

    def report_filter(self) -> ReportFilter:
        data = self.cleaned_data
        return ReportFilter(
            start=data["start"],
            end=data["end"],
            site=data["site"],
            bank=data["bank"],
            asset_type=data["asset_type"],
        )

    def options(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in names}
