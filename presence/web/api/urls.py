"""``/api/`` routes: the simplejwt token pair (PROTOCOL.md section 1), throttled."""

from django.urls import path

from presence.web.api.tokens import ThrottledTokenObtainPairView, ThrottledTokenRefreshView

urlpatterns = [
    path("token/", ThrottledTokenObtainPairView.as_view(), name="token-obtain-pair"),
    path("token/refresh/", ThrottledTokenRefreshView.as_view(), name="token-refresh"),
]
