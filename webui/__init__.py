"""The web console and REST API (Flask app factory; one blueprint per feature)."""

from .app import create_app

__all__ = ["create_app"]
