"""Alembic environment: the URL comes from the config, else from ``StoreSettings``.

``StoreSettings`` is what ``bilevel migrate`` and every service read: ``DATABASE_URL`` or
``BILEVEL_DATABASE_URL`` for PostgreSQL, else the embedded SQLite store under
``BILEVEL_STATE_DIR``; so a plain ``alembic upgrade head`` migrates the store the service uses.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from jobs.settings import StoreSettings
from jobs.store.db import normalize_url
from jobs.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or StoreSettings().store_url
config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        # psycopg prepares no statement on the server: a migration runs each about once, and
        # one left on a pooled server connection (PgBouncer in transaction mode keeps it for
        # the next client) would collide with that client's own (docs/guides/pool-at-scale.md)
        postgres = (config.get_main_option("sqlalchemy.url") or "").startswith("postgresql")
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
            connect_args={"prepare_threshold": None} if postgres else {},
        )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            # SQLite cannot ALTER most things: batch mode copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
