"""SCIM 2.0 routes (/scim/v2/...)."""

urlpatterns: list = []
