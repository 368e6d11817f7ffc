"""HTTP routes: admin, health, readiness, metrics and the browser client page."""

from django.contrib import admin
from django.urls import include, path

from presence import views

urlpatterns = [
    path("", views.client_page, name="client-page"),
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("admin/", admin.site.urls),
    path("api/", include("presence.api.urls")),
    path("", include("django_prometheus.urls")),
]
