"""The reproductions' settings: the one thing ``bilevel reproduce`` takes from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ReproduceSettings"]


class ReproduceSettings(BaseSettings):
    """Where the real data sets are (``BILEVEL_DATA_DIR``, the workers' setting too)."""

    model_config = SettingsConfigDict(extra="ignore")

    data_dir: Path | None = Field(None, validation_alias=AliasChoices("BILEVEL_DATA_DIR"))
