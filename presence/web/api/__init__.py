"""HTTP API of presence (Django REST framework): tokens under /api/, stats under /ws/."""
