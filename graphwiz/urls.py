"""HTTP routes: admin, health, readiness, metrics, stats and the browser client page."""

from django.contrib import admin
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView

from presence.web import views
from presence.web.api import stats
from presence.web.metrics_views import metrics_access, performance_report

urlpatterns = [
    path("", views.client_page, name="client-page"),
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("ws/stats", stats.ClusterStatsView.as_view(), name="stats"),
    path("ws/<str:room_id>/stats", stats.RoomStatsView.as_view(), name="room-stats"),
    path("admin/", admin.site.urls),
    path("api/", include("presence.web.api.urls")),
    path("metrics", metrics_access(ExportToDjangoView), name="prometheus-django-metrics"),
    path("metrics/report", performance_report, name="metrics-report"),
]
