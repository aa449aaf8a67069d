"""Service fixtures: a throwaway PostgreSQL database per session, Redis, settings.

Without PostgreSQL or Redis the tests that need them skip with the reason; with ``CI=true``
they fail instead, so a CI run without its services cannot pass by skipping.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# API keys are hashed under a server secret: one for the whole test run, inherited by every
# `bilevel serve` and worker the tests start, and used by tests.factories.team_with_key
KEY_SECRET = "test-key-secret-" + "0123456789abcdef" * 2
os.environ["BILEVEL_KEY_SECRET"] = KEY_SECRET
# the per-key rate limit is off unless a test sets it: flows poll a job every 20 ms
os.environ["BILEVEL_RATE_LIMIT_PER_S"] = "0"
# job processes start without compiling the toy (seconds of Inductor per worker started);
# tests/worker/test_compile_warm_up.py runs the compiled warm-up itself
os.environ["BILEVEL_COMPILE_WARM_UP"] = "false"


# fastapi.testclient warns about its own httpx import on import; nothing to act on here
_HTTPX_WARNING = "ignore:Using .httpx. with .starlette.testclient. is deprecated"
warnings.filterwarnings("ignore", message="Using .httpx. with .starlette.testclient.")


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", _HTTPX_WARNING)


# the service fixtures: a test that uses one of them talks to a real server
_SERVICE_FIXTURES = frozenset({"pg_server", "redis_url", "fault_pg", "make_redis"})


def pytest_collection_modifyitems(config, items):
    """Mark what each test needs (the markers are registered in pyproject.toml).

    ``integration``: it uses PostgreSQL or Redis, directly or through a fixture that does
    (``-m "not integration"`` is the suite a machine without them can run); ``browser``: it
    drives Chromium; ``gpu`` tests skip, with the reason, where torch sees no CUDA device.
    """
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.path.name == "test_dashboard.py":
            item.add_marker(pytest.mark.browser)
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false")
            for item in gpu:
                item.add_marker(skip)


def unavailable(what: str, why: object) -> None:
    """Skip (locally) or fail (in CI) for a missing service."""
    message = f"{what} unreachable: {why}"
    if CI:
        pytest.fail(f"{message} (CI=true: services are required)", pytrace=False)
    pytest.skip(message)


def _admin_connect():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


def _db_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        with _admin_connect() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        unavailable(f"PostgreSQL at {PG_ADMIN_URL}", exc)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def fresh_database(pg_server):
    """A factory of empty databases ``test_<random>``, all dropped at the end."""
    names: list[str] = []

    def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with _admin_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return _db_url(name)

    yield make
    with _admin_connect() as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(fresh_database) -> str:
    """A migrated throwaway database shared by the session's service tests."""
    from migrations import upgrade

    url = fresh_database()
    upgrade(url)
    return url


@pytest.fixture
def pg_sessions(pg_url) -> Iterator:
    from jobs.store.db import make_engine, make_session_factory

    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@pytest.fixture
def sqlite_sessions(tmp_path) -> Iterator:
    """A migrated SQLite store under a temporary state directory."""
    from jobs.store.db import make_engine, make_session_factory, sqlite_url
    from migrations import upgrade

    url = sqlite_url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template(fresh_database):
    """A migrated database to copy (``CREATE DATABASE ... TEMPLATE``: fast, no migration)."""
    from migrations import upgrade

    url = fresh_database()
    upgrade(url)
    return url


@pytest.fixture
def own_pg_sessions(pg_template) -> Iterator:
    """A migrated PostgreSQL store of this test's own (nothing queued by other tests)."""
    import psycopg

    from jobs.store.db import make_engine, make_session_factory

    template = pg_template.rpartition("/")[2]
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
