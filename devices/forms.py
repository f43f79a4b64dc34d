"""Forms of the dashboard and the kiosk pages: input parsing only, the actions do the rest."""

from __future__ import annotations

from django import forms

from devices.models import LockerBank


class RemoteOpenForm(forms.Form):
    reason = forms.CharField(
        min_length=3,
        max_length=200,
        strip=True,
        error_messages={"required": "Say why the door is opened remotely."},
    )


class SlotServiceForm(forms.Form):
    out_of_service = forms.BooleanField(required=False)
    reason = forms.CharField(max_length=200, required=False, strip=True)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("out_of_service") and len(data.get("reason") or "") < 3:
            self.add_error("reason", "Say why the slot is taken out of service.")
        return data


class PairKioskForm(forms.Form):
    bank = forms.ModelChoiceField(queryset=LockerBank.objects.none(), to_field_name="code")
    name = forms.CharField(max_length=80, strip=True, help_text="Where the screen hangs.")

    def __init__(self, *args, banks=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["bank"].queryset = banks if banks is not None else LockerBank.objects.none()
