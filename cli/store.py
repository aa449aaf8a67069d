"""The server side's settings, store and key secrets, shared by ``serve``, ``migrate`` and
``keys``.

They work on the same store as ``serve``: ``DATABASE_URL``, or SQLite under ``--state-dir``
(``BILEVEL_STATE_DIR``). SQLAlchemy and the server's settings are imported inside the
functions, so that importing this module (as ``cli.main`` does) stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cli.errors import UsageError
from cli.settings import KEY_FILE

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from jobs.settings import StoreSettings

__all__ = [
    "ensure_local_key",
    "key_secret",
    "open_store",
    "previous_key_secret",
    "secret_names",
    "settings_for",
]

S = TypeVar("S", bound="StoreSettings")


def settings_for(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """``cls`` read from the environment, with ``--state-dir`` (when given) over it."""
    over = dict(extra)
    if getattr(args, "state_dir", None):
        over["state_dir"] = Path(args.state_dir)
    return cls(**over)


def open_store(args: argparse.Namespace) -> tuple[StoreSettings, sessionmaker[Session]]:
    """Settings and a session factory on the configured store (migrating SQLite first)."""
    from jobs.settings import StoreSettings
    from jobs.store.db import make_engine, make_session_factory
    from migrations import upgrade

    settings = settings_for(StoreSettings, args)
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.store_url)
    engine = make_engine(settings.store_url, prepared=settings.db_prepared_statements)
    return settings, make_session_factory(engine)


def key_secret(settings: StoreSettings) -> bytes:
    """The server secret API keys are hashed with (see ``jobs.keys``), or a usage error."""
    from jobs.keys import KeySecretError, load_key_secret

    try:
        return load_key_secret(settings)
    except KeySecretError as exc:
        raise UsageError(str(exc)) from None


def previous_key_secret(settings: StoreSettings) -> bytes | None:
    """The secret a rotation retires (``BILEVEL_KEY_SECRET_PREVIOUS``), or a usage error."""
    from jobs.keys import KeySecretError, load_previous_key_secret

    try:
        return load_previous_key_secret(settings)
    except KeySecretError as exc:
        raise UsageError(str(exc)) from None


def secret_names(settings: StoreSettings) -> dict[str | None, str]:
    """``secret_id -> "current" | "previous"`` for ``keys list``; empty without secrets."""
    from jobs.keys import KeySecretError, load_key_secret, load_previous_key_secret, secret_id

    names: dict[str | None, str] = {}
    try:
        names[secret_id(load_key_secret(settings))] = "current"
        previous = load_previous_key_secret(settings)
    except KeySecretError:
        return names  # listing needs no secret: the column then shows the raw fingerprints
    if previous is not None:
        names[secret_id(previous)] = "previous"
    return names


def ensure_local_key(settings: StoreSettings, sessions: sessionmaker[Session]) -> str | None:
    """First embedded start: a team ``local`` with the owner's key, saved (0600) under state_dir.

    The owner runs the embedded pool, so the key is operator-scoped: it manages the team's
    keys (``/v1/keys``), sets weights and limits and reads ``/metrics``. A key file from
    before scopes (or before the operator scope) existed is promoted on the next start.

    Returns:
        The new key, or ``None`` when the store already had a team and the key file.
    """
    from jobs.status import KeyScope
    from jobs.store import repo

    secret = key_secret(settings)
    path = settings.resolved_state_dir / KEY_FILE
    with sessions.begin() as s:
        if repo.any_team_exists(s) and path.exists():
            # also rehashes a legacy SHA-256 row to the keyed hash
            principal = repo.verify_key(
                s, path.read_text().strip(), secret=secret, previous=previous_key_secret(settings)
            )
            if principal is not None and not principal.operator:
                repo.set_api_key_scope(s, principal.prefix, KeyScope.OPERATOR)
            return None
        team = repo.ensure_team(s, "local")
        _, key = repo.create_api_key(s, team, name="local", secret=secret, scope=KeyScope.OPERATOR,
                                     actor=repo.Actor.operator(team.id))  # fmt: skip
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key
