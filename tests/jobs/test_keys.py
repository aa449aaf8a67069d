"""The server secret for API key hashes, and keys made before migration 0003."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from jobs import repo
from jobs.db import alembic_config, make_engine, make_session_factory, sqlite_url
from jobs.keys import KeySecretError, load_key_secret
from jobs.settings import StoreSettings


def _settings(tmp_path, **over) -> StoreSettings:
    # explicit None beats the test run's BILEVEL_KEY_SECRET in the environment
    return StoreSettings(**{"state_dir": tmp_path, "key_secret": None, "key_secret_file": None,
                            **over})  # fmt: skip


def test_the_embedded_mode_generates_a_private_secret_once(tmp_path):
    settings = _settings(tmp_path / "state")
    secret = load_key_secret(settings)
    path = tmp_path / "state" / "key_secret"
    assert len(secret) == 64 and path.read_text().strip().encode() == secret
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_key_secret(settings) == secret  # kept, not regenerated
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_the_distributed_mode_requires_a_shared_secret(tmp_path):
    url = "postgresql://nobody@127.0.0.1/none"
    with pytest.raises(KeySecretError, match="BILEVEL_KEY_SECRET or BILEVEL_KEY_SECRET_FILE"):
        load_key_secret(_settings(tmp_path, database_url=url))
    assert not (tmp_path / "key_secret").exists()  # never guessed locally
    missing = tmp_path / "nope"
    with pytest.raises(KeySecretError, match=f"cannot read the key secret file {missing}"):
        load_key_secret(_settings(tmp_path, database_url=url, key_secret_file=missing))
    (tmp_path / "secret").write_text("s" * 40 + "\n")
    got = load_key_secret(
        _settings(tmp_path, database_url=url, key_secret_file=tmp_path / "secret")
    )
    assert got == b"s" * 40
    settings = StoreSettings(database_url=url, key_secret="k" * 32)
    assert load_key_secret(settings) == b"k" * 32


def test_a_short_secret_is_refused_naming_the_limit(tmp_path):
    with pytest.raises(KeySecretError, match="at least 32 characters, got 5"):
        load_key_secret(StoreSettings(state_dir=tmp_path, key_secret="short"))


def test_the_api_refuses_to_start_distributed_without_a_secret(tmp_path):
    from api import ApiSettings, create_app

    settings = ApiSettings(database_url="postgresql://nobody@127.0.0.1/none", key_secret=None,
                           key_secret_file=None)  # fmt: skip
    with pytest.raises(ValueError, match="BILEVEL_KEY_SECRET"):
        create_app(settings, dispatcher=object())


def test_a_key_made_before_migration_0003_authenticates_once_rehashed(tmp_path):
    """Upgrade a store holding a plain-SHA-256 key: it works, becomes HMAC, scope team."""
    url = sqlite_url(tmp_path)
    command.upgrade(alembic_config(url), "0002")
    key, prefix, team_id = "blv_0badc0de_legacy-secret-part", "0badc0de", uuid.uuid4()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO teams (id, name, created_at) VALUES (:id, 'old', "
                          "'2026-01-01 00:00:00')"), {"id": team_id.hex})  # fmt: skip
        conn.execute(
            text("INSERT INTO api_keys (id, team_id, name, prefix, key_hash, created_at) "
                 "VALUES (:id, :team, '', :prefix, :hash, '2026-01-01 00:00:00')"),
            {"id": uuid.uuid4().hex, "team": team_id.hex, "prefix": prefix,
             "hash": hashlib.sha256(key.encode()).hexdigest()},
        )  # fmt: skip
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    sessions = make_session_factory(make_engine(url))
    secret = b"x" * 32
    with sessions.begin() as s:
        row = repo.get_api_key(s, prefix)
        assert (row.hash_scheme, row.scope) == ("sha256", "team")
        assert repo.verify_key(s, key + "!", secret=secret) is None
        principal = repo.verify_key(s, key, secret=secret)
        assert principal.team.id == team_id and principal.rehashed and not principal.admin
    with sessions() as s:
        assert repo.get_api_key(s, prefix).hash_scheme == "hmac-sha256"
        again = repo.verify_key(s, key, secret=secret)
        assert again is not None and not again.rehashed
