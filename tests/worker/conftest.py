"""The runner's tests run on both stores: PostgreSQL (the service) and SQLite (embedded).

Each test gets a store of its own: a worker claims the queued job the pool's fair share
picks among all of its kind, so another test's queued job must not be there to be picked.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(
        "own_pg_sessions" if request.param == "postgres" else "sqlite_sessions"
    )
