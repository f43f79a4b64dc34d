"""The HR page for CSV imports (/people/import/): upload, dry run, a line for every bad row."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from access.imports import Kind, columns, import_csv
from lockerhub import audit
from lockerhub.roles import Role, has_role

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        label="What the file holds",
        choices=[
            (Kind.EMPLOYEES, "Employees"),
            (Kind.BADGES, "Badges"),
            (Kind.SHIFTS, "Shift assignments"),
        ],
    )
    file = forms.FileField(label="CSV file (UTF-8, header row)")
    dry_run = forms.BooleanField(
        label="Dry run: check every row, save nothing", required=False, initial=True
    )

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The file is larger than 5 MB; split it.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "The file is not UTF-8 text; save it as CSV UTF-8."
            ) from None


@login_required
def import_people(request: HttpRequest) -> HttpResponse:
    """Upload a CSV of employees, badges or shift assignments. HR only."""
    if not has_role(request.user, Role.HR):
        raise PermissionDenied
    report = None
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            report = import_csv(
                form.cleaned_data["kind"],
                form.cleaned_data["file"],
                actor=audit.actor_for_user(request.user),
                dry_run=form.cleaned_data["dry_run"],
            )
    else:
        form = ImportForm()
    formats = [(kind.value, *columns(kind)) for kind in Kind]
    return render(
        request,
        "people/import.html",
        {"form": form, "report": report, "formats": formats},
        status=400 if report is not None and report.errors else 200,
    )
