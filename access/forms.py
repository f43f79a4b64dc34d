"""Forms of the HR pages. They parse and check input; the actions in access.actions change things."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from access.models import Badge, Employee, Shift, uid_validator


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=100,
        help_text="Name, employee number, department or badge UID",
    )
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *Employee.Status.choices],
    )


class UidField(forms.CharField):
    """A badge UID as people and readers write it (``04:a1:b2…``), stored as upper-case hex."""

    def to_python(self, value: object) -> str:
        # Drop only separators: any other stray character must reach the validator and be named.
        text = super().to_python(value).upper()
        return "".join(ch for ch in text if ch not in " :-.")


class IssueBadgeForm(forms.Form):
    uid = UidField(
        label="Badge UID",
        max_length=40,
        validators=[uid_validator],
        help_text="As printed or read, e.g. 04:A1:B2:C3:D4:E5:F6",
    )
    technology = forms.ChoiceField(label="Technology", choices=Badge.Technology.choices)
    pin = forms.CharField(
        label="PIN (optional)",
        required=False,
        help_text="4 to 8 digits; asked for with high-value devices",
        widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    temporary = forms.BooleanField(label="Temporary badge", required=False)
    valid_until = forms.DateTimeField(
        label="Valid until",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean_uid(self) -> str:
        uid = self.cleaned_data["uid"]
        holder = Badge.objects.filter(uid=uid, status=Badge.Status.ACTIVE).select_related(
            "employee"
        )
        if holder:
            raise ValidationError(
                f"This UID is already on an active badge of {holder[0].employee}."
            )
        return uid

    def clean_pin(self) -> str:
        pin = self.cleaned_data["pin"]
        if pin and not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValidationError("A PIN is 4 to 8 digits.")
        return pin

    def clean(self) -> dict:
        data = super().clean()
        if (
            data.get("temporary")
            and not data.get("valid_until")
            and "valid_until" not in self.errors
        ):
            self.add_error("valid_until", "A temporary badge needs an expiry.")
        return data


class ReplaceBadgeForm(forms.Form):
    status = forms.ChoiceField(
        label="What happened to the old badge",
        choices=[(Badge.Status.LOST, "Lost"), (Badge.Status.REVOKED, "Damaged or withdrawn")],
        initial=Badge.Status.LOST,
        widget=forms.RadioSelect,
    )
    uid = UidField(label="New badge UID", max_length=40, validators=[uid_validator])
    reason = forms.CharField(label="Note (optional)", required=False, max_length=200)

    clean_uid = IssueBadgeForm.clean_uid


class ShiftAssignmentForm(forms.Form):
    employees = forms.ModelMultipleChoiceField(
        label="People",
        queryset=Employee.objects.filter(status=Employee.Status.ACTIVE),
        error_messages={
            "required": "Choose at least one person.",
            "invalid_choice": "One of the chosen people is not active any more.",
        },
        # Chosen on the search page; carried along, not listed again (there may be thousands).
        widget=forms.MultipleHiddenInput,
    )
    shift = forms.ModelChoiceField(
        label="Shift",
        queryset=Shift.objects.select_related("site"),
        empty_label="Choose a shift",
    )
    valid_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    valid_until = forms.DateField(
        label="Until (optional)",
        required=False,
        help_text="The last day, inclusive; leave empty for no end",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and end < start:
            self.add_error("valid_until", "The last day comes before the first.")
        return data


def add_action_errors(form: forms.Form, error: ValidationError) -> None:
    """Show an action's refusal on the form: under the field it names, or above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)
