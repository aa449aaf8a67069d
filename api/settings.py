"""The API's settings (environment ``BILEVEL_*``, ``DATABASE_URL``, ``BROKER_URL``)."""

from __future__ import annotations

from pydantic import Field

from jobs.settings import StoreSettings

__all__ = ["ApiSettings"]


class ApiSettings(StoreSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # the most points one trace response may hold, and the default
    max_trace_points: int = Field(100_000, ge=10)
    default_trace_points: int = Field(5_000, ge=10)
