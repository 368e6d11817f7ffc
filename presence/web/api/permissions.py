"""Who may read the operational API."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class IsStaffOrDebug(BasePermission):
    """Staff users (session or simplejwt Bearer token); anyone while ``DEBUG`` is on.

    Read per request, so a changed ``DEBUG`` (tests) applies at once. DRF answers
    401 when no credentials authenticated (and for a bad token), 403 for non-staff.
    """

    message = "Staff only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        """True in debug mode or for an authenticated staff user."""
        if settings.DEBUG:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
