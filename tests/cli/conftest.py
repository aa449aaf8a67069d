"""A server for the client commands: the real API in this process, on a SQLite store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


class _Dispatcher:
    """Sends nothing: the client tests need the API's answers, not a run."""

    def send(self, job_id, queue) -> None:
        pass

    def ping(self) -> bool:
        return True


# what the environment may say of a store, a server or a team default: each test names its own
_ENV = (
    "DATABASE_URL",
    "BROKER_URL",
    "CELERY_BROKER_URL",
    "BILEVEL_DEFAULT_TEAM_WEIGHT",
    "BILEVEL_URL",
    "BILEVEL_API_KEY",
    "STATE_DIR",
)


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A state directory of the test's own, and none of the environment's service settings."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def api_server(tmp_path, monkeypatch):
    """Client commands talk to ``create_app`` in this process, whatever ``--url`` says.

    The app is built at the command's first request, so it reads the environment the test
    has set by then (``BILEVEL_MAX_INNER_STEPS``, ...), as a server would at its start, with
    ``server.settings`` over it. Any API key is the team ``cli``'s admin key: these tests are
    about the client, not authentication.
    """
    import uuid

    from fastapi.testclient import TestClient

    from api.deps import get_principal, get_team
    from api.main import create_app
    from api.settings import ApiSettings
    from cli import client
    from jobs.store import repo
    from jobs.store.db import make_engine, make_session_factory, sqlite_url
    from migrations import upgrade

    store = tmp_path / "server"
    store.mkdir()
    upgrade(sqlite_url(store))
    engine = make_engine(sqlite_url(store))
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        team = repo.ensure_team(s, "cli")
        ref = repo.TeamRef(team.id, team.name)
    principal = repo.Principal(team=ref, key_id=uuid.uuid4(), prefix="c11", scope="admin",
                               name="cli")  # fmt: skip

    server = SimpleNamespace(sessions=sessions, settings={})

    def connect(url, headers):
        settings = ApiSettings(
            database_url=None, broker_url=None, state_dir=store, **server.settings
        )
        app = create_app(settings, dispatcher=_Dispatcher(), sessions=sessions)
        app.dependency_overrides[get_team] = lambda: ref
        app.dependency_overrides[get_principal] = lambda: principal
        return TestClient(app, base_url=url, headers=dict(headers))

    monkeypatch.setattr(client, "_connect", connect)
    yield server
    engine.dispose()
