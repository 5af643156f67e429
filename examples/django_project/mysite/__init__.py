"""A minimal Django project whose tasks run on fsjobs (see examples/django_backend.py)."""
