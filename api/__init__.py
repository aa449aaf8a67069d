"""The REST API (FastAPI): ``create_app`` and its settings. No torch here."""

from api.main import create_app
from api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
