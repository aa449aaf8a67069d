"""Bodies of ``/v1/keys``: a key as listed (never its secret), a new key, the created key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.models import ApiKey
from jobs.specs.job import TEXT

__all__ = ["KeyCreate", "KeyCreated", "KeyPublic", "KeysPublic"]


class KeyPublic(BaseModel):
    """An API key as listed: never its secret part, which is not stored."""

    prefix: str
    name: str
    scope: Literal["team", "admin"]
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        """The public view of a key row."""
        return cls(prefix=key.prefix, name=key.name, scope=key.scope,
                   created_at=key.created_at, revoked_at=key.revoked_at)  # fmt: skip


class KeysPublic(BaseModel):
    """The team's keys, oldest first."""

    data: list[KeyPublic]
    count: int


class KeyCreate(BaseModel):
    """A new key for the caller's team."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(max_length=100, pattern=TEXT)] = ""
    scope: Literal["team", "admin"] = "team"


class KeyCreated(KeyPublic):
    """The new key, with its plaintext: shown this once, stored only as a keyed hash."""

    key: str
