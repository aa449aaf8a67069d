"""The runner's tests run on both stores: PostgreSQL (the service) and SQLite (embedded)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(
        "pg_sessions" if request.param == "postgres" else "sqlite_sessions"
    )
