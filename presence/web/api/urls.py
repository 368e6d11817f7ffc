"""``/api/`` routes: the simplejwt token pair (PROTOCOL.md section 1), throttled; rooms;
the OpenAPI schema and its browsable page; the page's session token and public room
list (presence/web/api/page.py)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from presence.web.api import rooms
from presence.web.api.page import PublicRoomsView, SessionTokenView
from presence.web.api.tokens import ThrottledTokenObtainPairView, ThrottledTokenRefreshView

urlpatterns = [
    path("token/", ThrottledTokenObtainPairView.as_view(), name="token-obtain-pair"),
    path("token/refresh/", ThrottledTokenRefreshView.as_view(), name="token-refresh"),
    path("token/session/", SessionTokenView.as_view(), name="token-session"),
    # Not under rooms/: rooms/<room_id>/ is the staff API's (a room may be named "public").
    path("public/rooms/", PublicRoomsView.as_view(), name="public-rooms"),
    path("rooms/", rooms.RoomListView.as_view(), name="api-rooms"),
    path("rooms/<str:room_id>/", rooms.RoomDetailView.as_view(), name="api-room"),
    path("rooms/<str:room_id>/chat/", rooms.ChatHistoryView.as_view(), name="api-room-chat"),
    path("rooms/<str:room_id>/messages/", rooms.AnnounceView.as_view(), name="api-room-messages"),
    path("rooms/<str:room_id>/kick/", rooms.KickView.as_view(), name="api-room-kick"),
    path("rooms/<str:room_id>/mute/", rooms.MuteView.as_view(), name="api-room-mute"),
    path("rooms/<str:room_id>/lock/", rooms.LockView.as_view(), name="api-room-lock"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
