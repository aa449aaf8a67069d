"""One APIRouter per resource, and the dashboard's static files."""

from api.routes import dashboard, health, jobs, keys

__all__ = ["dashboard", "health", "jobs", "keys"]
