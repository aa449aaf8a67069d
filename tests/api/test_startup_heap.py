"""A started app's objects are out of the reach of the garbage collector's full collections.

Under the scale benchmark's load a full (generation 2) collection walked the ~180,000
objects of the started app on whichever request crossed the threshold: 400-630 ms of wall
time with the GIL held, most often on ``/v1/pool``, which made that route's p99.
"""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

import api.main
from api import ApiSettings, create_app
from tests.api.conftest import RecordingDispatcher


def _walked(obj: object) -> bool:
    """Whether a full collection walks ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_starting_the_app_freezes_what_it_holds_once_per_process(own_pg_sessions, monkeypatch):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None)
    monkeypatch.setattr(api.main, "_heap_frozen", False)  # as in a fresh server process
    gc.unfreeze()
    try:
        app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
        assert _walked(app.router)
        with TestClient(app) as c:
            assert c.get("/healthz").status_code == 200
            assert not _walked(app.router) and gc.get_freeze_count() > 0
        # a later app of the same process (tests) is not frozen: it stays collectable
        later = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
        with TestClient(later):
            assert _walked(later.router)
    finally:
        gc.unfreeze()  # the other tests' objects stay collectable too
