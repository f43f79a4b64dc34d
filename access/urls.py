"""Web pages of this app (server-rendered)."""

from django.urls import path

from access import views

app_name = "access"
urlpatterns: list = [
    path("me/", views.mine, name="mine"),
    path("people/", views.people, name="people"),
    path("people/<int:pk>/", views.person, name="person"),
    path("people/<int:pk>/badges/new/", views.issue_badge, name="badge-issue"),
    path("people/<int:pk>/offboard/", views.offboard, name="offboard"),
    path("people/badges/<int:pk>/replace/", views.replace_badge, name="badge-replace"),
    path("people/shifts/assign/", views.assign_shifts, name="shift-assign"),
]

# CSV import for HR (access.views_import).
from access.views_import import import_people  # noqa: E402

urlpatterns += [path("people/import/", import_people, name="people-import")]
