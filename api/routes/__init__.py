"""One APIRouter per resource."""

from api.routes import health, jobs, keys

__all__ = ["health", "jobs", "keys"]
