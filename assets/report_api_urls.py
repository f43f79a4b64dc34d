"""Report endpoints of the REST API (/api/reports/...)."""

urlpatterns: list = []
