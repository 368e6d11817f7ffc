"""``/api/`` routes: the simplejwt token pair (PROTOCOL.md section 1), throttled;
the page's session token and public room list (presence/web/api/page.py)."""

from django.urls import path

from presence.web.api.page import PublicRoomsView, SessionTokenView
from presence.web.api.tokens import ThrottledTokenObtainPairView, ThrottledTokenRefreshView

urlpatterns = [
    path("token/", ThrottledTokenObtainPairView.as_view(), name="token-obtain-pair"),
    path("token/refresh/", ThrottledTokenRefreshView.as_view(), name="token-refresh"),
    path("token/session/", SessionTokenView.as_view(), name="token-session"),
    path("rooms/public/", PublicRoomsView.as_view(), name="rooms-public"),
]
