"""SCIM 2.0 routes (/scim/v2/...). The views are in access.scim."""

from django.urls import path

from access import scim

app_name = "scim"
urlpatterns = [
    path("Users", scim.UsersView.as_view(), name="users"),
    path("Users/<str:pk>", scim.UserView.as_view(), name="user"),
    path(
        "ServiceProviderConfig",
        scim.ServiceProviderConfigView.as_view(),
        name="service-provider-config",
    ),
    path("Schemas", scim.SchemasView.as_view(), name="schemas"),
    path("Schemas/<str:urn>", scim.SchemasView.as_view(), name="schema"),
    path("ResourceTypes", scim.ResourceTypesView.as_view(), name="resource-types"),
    path(
        "ResourceTypes/User",
        scim.ResourceTypesView.as_view(),
        {"name": "User"},
        name="resource-type-user",
    ),
    path("ResourceTypes/<str:name>", scim.ResourceTypesView.as_view(), name="resource-type"),
]
