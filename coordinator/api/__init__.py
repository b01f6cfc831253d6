"""The coordinator's HTTP API (FastAPI): see :func:`coordinator.api.app.create_app`."""

from coordinator.api.app import ApiBackend, create_app

__all__ = ["ApiBackend", "create_app"]
