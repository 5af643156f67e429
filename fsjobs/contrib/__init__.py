"""Integrations with other frameworks, each behind an extra (``fsjobs[django]``)."""
