"""An app on the session's PostgreSQL database, with a dispatcher that records sends."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from tests.factories import bearer, team_with_key


class RecordingDispatcher:
    """The unit boundary between the API and the workers: remembers what was sent."""

    def __init__(self):
        self.sent: list[tuple[uuid.UUID, str]] = []

    def send(self, job_id, queue):
        self.sent.append((job_id, queue))

    def ping(self) -> bool:
        return True


@pytest.fixture
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture
def client(pg_url, pg_sessions, dispatcher):
    settings = ApiSettings(database_url=pg_url, broker_url=None)
    app = create_app(settings, dispatcher=dispatcher, sessions=pg_sessions)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_client(pg_url, pg_sessions, dispatcher):
    """``make_client(**settings)``: a TestClient on an app with those settings."""
    clients = []

    def make(**over) -> TestClient:
        settings = ApiSettings(database_url=pg_url, broker_url=None, **over)
        c = TestClient(create_app(settings, dispatcher=dispatcher, sessions=pg_sessions))
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def auth(pg_sessions):
    _, key = team_with_key(pg_sessions)
    return bearer(key)


@pytest.fixture
def other_auth(pg_sessions):
    _, key = team_with_key(pg_sessions)
    return bearer(key)
