"""One APIRouter per resource."""

from api.routes import health, jobs

__all__ = ["health", "jobs"]
