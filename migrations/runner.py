"""Running the packaged migrations from code: ``bilevel migrate``, the embedded store's
first start, the tests and the benchmarks call :func:`upgrade`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.store.db import normalize_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]


def alembic_config(url: str) -> Config:
    """An Alembic config for the packaged migrations, independent of the working directory."""
    from alembic.config import Config

    # the stream of now: Config's default is sys.stdout as it was when alembic was imported,
    # which under pytest's capture may be a stream closed since
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``url``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
