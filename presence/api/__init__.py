"""HTTP API of presence (Django REST framework): token endpoints, mounted under ``/api/``."""
