"""The Python client against the real API: in this process (``app``), or ``bilevel serve``."""

from __future__ import annotations

import uuid

import pytest


class _Dispatcher:
    """Sends nothing: these tests need the API's answers, not a run."""

    def send(self, job_id, queue) -> None:
        pass

    def ping(self) -> bool:
        return True


@pytest.fixture
def app(tmp_path):
    """``create_app`` on a SQLite store of the test's own; every key is team ``nb``'s admin."""
    from api.deps import get_principal, get_team
    from api.main import create_app
    from api.settings import ApiSettings
    from jobs.store import repo
    from jobs.store.db import make_engine, make_session_factory, sqlite_url
    from migrations import upgrade

    upgrade(sqlite_url(tmp_path))
    engine = make_engine(sqlite_url(tmp_path))
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        team = repo.ensure_team(s, "nb")
        ref = repo.TeamRef(team.id, team.name)
    principal = repo.Principal(team=ref, key_id=uuid.uuid4(), prefix="nb1", scope="admin",
                               name="nb")  # fmt: skip
    settings = ApiSettings(database_url=None, broker_url=None, state_dir=tmp_path)
    app = create_app(settings, dispatcher=_Dispatcher(), sessions=sessions)
    app.dependency_overrides[get_team] = lambda: ref
    app.dependency_overrides[get_principal] = lambda: principal
    app.state.test_sessions = sessions
    yield app
    engine.dispose()


@pytest.fixture
def api(app):
    """A :class:`client.Client` on the in-process app."""
    from fastapi.testclient import TestClient

    from client import Client

    with Client("http://testserver", "blv_x_y", http=TestClient(app)) as c:
        yield c
