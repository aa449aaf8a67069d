"""The server secret for API key hashes, and keys made before migration 0003."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from jobs.keys import KeySecretError, load_key_secret, load_previous_key_secret, secret_id
from jobs.settings import StoreSettings
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory, sqlite_url
from migrations import alembic_config


def _settings(tmp_path, **over) -> StoreSettings:
    # explicit None beats the test run's BILEVEL_KEY_SECRET in the environment
    return StoreSettings(**{"state_dir": tmp_path, "key_secret": None, "key_secret_file": None,
                            "key_secret_previous": None, "key_secret_previous_file": None,
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


def _store(tmp_path):
    url = sqlite_url(tmp_path)
    command.upgrade(alembic_config(url), "head")
    return make_session_factory(make_engine(url))


OLD, NEW = b"o" * 32, b"n" * 32


def test_a_key_from_before_0004_is_tried_with_both_secrets_then_labelled(tmp_path):
    sessions = _store(tmp_path)
    made = {}
    with sessions.begin() as s:
        team = repo.ensure_team(s, "t")
        for secret in (OLD, NEW):
            _, made[secret] = repo.create_api_key(
                s, team, secret=secret, actor=repo.Actor.operator(team.id)
            )
        s.execute(text("UPDATE api_keys SET secret_id = NULL"))  # as rows before 0004 are
    with sessions.begin() as s:
        assert repo.verify_key(s, made[OLD], secret=NEW) is None  # no previous secret named
    for key in made.values():
        with sessions.begin() as s:
            principal = repo.verify_key(s, key, secret=NEW, previous=OLD)
            assert principal is not None and principal.rehashed
        with sessions() as s:
            row = repo.get_api_key(s, key.split("_")[1])
            assert row.secret_id == secret_id(NEW)
            assert repo.verify_key(s, key, secret=NEW).rehashed is False  # nothing left to move


def test_a_row_labelled_with_the_previous_secret_is_checked_against_it_alone(tmp_path):
    sessions = _store(tmp_path)
    with sessions.begin() as s:
        team = repo.ensure_team(s, "t")
        _, key = repo.create_api_key(s, team, secret=OLD, actor=repo.Actor.operator(team.id))
    with sessions.begin() as s:
        assert repo.verify_key(s, key + "x", secret=NEW, previous=OLD) is None
        assert repo.verify_key(s, key, secret=NEW, previous=b"z" * 32) is None  # another one
    with sessions() as s:
        assert repo.get_api_key(s, key.split("_")[1]).secret_id == secret_id(OLD)


def test_the_previous_secret_is_checked_like_the_current_one(tmp_path):
    assert load_previous_key_secret(_settings(tmp_path, key_secret="k" * 32)) is None
    good = _settings(tmp_path, key_secret="k" * 32, key_secret_previous="p" * 32)
    assert load_previous_key_secret(good) == b"p" * 32
    short = _settings(tmp_path, key_secret="k" * 32, key_secret_previous="p" * 7)
    with pytest.raises(KeySecretError, match="BILEVEL_KEY_SECRET_PREVIOUS must have at least 32 "
                       "characters, got 7"):  # fmt: skip
        load_previous_key_secret(short)
    same = _settings(tmp_path, key_secret="k" * 32, key_secret_previous="k" * 32)
    with pytest.raises(KeySecretError, match="equals the current one"):
        load_previous_key_secret(same)
    missing = tmp_path / "old-secret"
    with pytest.raises(KeySecretError, match=f"previous key secret file {missing}"):
        load_previous_key_secret(
            _settings(tmp_path, key_secret="k" * 32, key_secret_previous_file=missing)
        )
    missing.write_text("q" * 40 + "\n")
    from_file = _settings(tmp_path, key_secret="k" * 32, key_secret_previous_file=missing)
    assert load_previous_key_secret(from_file) == b"q" * 40
