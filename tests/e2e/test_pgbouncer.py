"""The service behind PgBouncer in transaction mode: migrations, the API and real workers.

docs/guides/pool-at-scale.md says the processes may connect to PgBouncer with
``pool_mode = transaction`` (each transaction gets whichever server connection is free), with
``BILEVEL_DB_PREPARED_STATEMENTS=false`` before PgBouncer 1.21. These tests run that: a
PgBouncer of their own with 3 server connections in front of a throwaway database, the
migrations through it, a uvicorn API and two Celery workers through it, all their claims,
heartbeats, trace writes and finishes sharing those 3 connections. Without ``pgbouncer`` they
skip locally and fail with ``CI=true`` (scripts/test.sh installs it).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from jobs.store.models import Job, JobEvent
from tests.conftest import unavailable
from tests.e2e.flows import TERMINAL
from tests.e2e.pgbouncer import PgBouncer, pgbouncer_missing
from tests.e2e.workers import ROOT, CeleryWorker
from tests.factories import bearer, team_with_key, tiny_spec, wait_until
from tests.faults.services import Api

POOL = 3  # server connections: fewer than the processes' pools, so they really are shared
JOBS, ITERATIONS = 12, 30
# what a log of ours must never say (a pooled connection that lost its session's state
# shows up as a psycopg error: a prepared statement that does not exist, a lock not held)
_SERVER_STATES = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
_LOG_ERRORS = re.compile(r"Traceback|\bERROR\b|CRITICAL|psycopg\.\w*Error|prepared statement")


@pytest.fixture(scope="module")
def bouncer(pg_server) -> Iterator[PgBouncer]:
    why = pgbouncer_missing()
    if why:
        unavailable("PgBouncer", why)
    b = PgBouncer(pg_server, pool_size=POOL).start()
    yield b
    b.stop()


def _sessions(url: str):
    from jobs.store.db import make_engine, make_session_factory

    return make_session_factory(make_engine(url, pool_size=2, max_overflow=2, prepared=False))


def _bounced_store(bouncer: PgBouncer, fresh_database) -> str:
    """A fresh database, migrated through the pooler; its URL through the pooler."""
    from migrations import upgrade

    name = fresh_database().rpartition("/")[2]
    url = bouncer.url(name)
    upgrade(url)
    return url


def test_migrations_run_through_pgbouncer_in_transaction_mode(bouncer, fresh_database):
    # Alembic runs every migration in one transaction (PostgreSQL's DDL is transactional),
    # so transaction pooling keeps it on one server connection from BEGIN to COMMIT
    from alembic.script import ScriptDirectory

    from migrations import alembic_config

    url = _bounced_store(bouncer, fresh_database)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with _sessions(url)() as s:
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == head
        assert s.scalar(select(Job.id).limit(1)) is None  # the tables are there, empty


def test_a_transaction_scoped_advisory_lock_holds_across_pooled_clients(bouncer, pg_url):
    # the claim's serialisation (jobs.store.repo.scheduling): pg_advisory_xact_lock lives
    # exactly as long as the transaction, which is what the pooler keeps on one connection
    sessions = _sessions(bouncer.url(pg_url.rpartition("/")[2]))
    key = 0x7E57_0001
    try_lock = text("SELECT pg_try_advisory_xact_lock(:k)")
    with sessions() as holder, sessions() as other:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        assert other.scalar(try_lock, {"k": key}) is False
        other.rollback()
        holder.commit()  # released with the transaction, whatever connection runs next
        assert other.scalar(try_lock, {"k": key}) is True
        other.rollback()


@pytest.fixture(scope="module")
def stack(bouncer, fresh_database, redis_url, tmp_path_factory):
    """A uvicorn API and two Celery workers, every one of them connected through the pooler."""
    url = _bounced_store(bouncer, fresh_database)
    logs = tmp_path_factory.mktemp("pgbouncer-logs")
    env = {
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        "BILEVEL_DB_PREPARED_STATEMENTS": "false",  # PgBouncer < 1.21 (Debian 12 has 1.18)
        "BILEVEL_FLUSH_EVERY_S": "0.1",
        "BILEVEL_LEASE_S": "3",  # heartbeats every second or so: more transactions to share
        "BILEVEL_TORCH_THREADS": "1",
    }
    procs = [CeleryWorker(env, logs, f"w{i + 1}").launch() for i in range(2)]
    api = Api(env, logs).launch()
    try:
        for p in [*procs, api]:
            p.wait_ready()
        yield url, api, procs
    finally:
        for p in [api, *procs]:
            p.stop()


def _submit_and_wait(api_url: str, auth: dict[str, str]) -> tuple[list[str], dict[str, dict]]:
    """Submit ``JOBS`` jobs from 4 threads, each twice with its key; wait for every one to
    end; their ids and traces."""
    with httpx.Client(base_url=api_url, headers=auth, timeout=30) as client:

        def submit(i: int) -> str:
            spec, key = tiny_spec(iterations=ITERATIONS, name=f"bounced-{i}"), f"k{i}"
            first = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})
            again = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})
            assert first.status_code == again.status_code == 201, (first.text, again.text)
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert again.json()["id"] == first.json()["id"]
            return first.json()["id"]

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(submit, range(JOBS)))

        def ended() -> bool:
            r = client.get("/v1/jobs", params={"limit": 200})
            return all(j["status"] in TERMINAL for j in r.json()["data"])

        wait_until(ended, 240, f"{JOBS} jobs to end")
        return ids, {i: client.get(f"/v1/jobs/{i}/trace").json() for i in ids}


def test_jobs_submitted_and_run_through_pgbouncer_each_succeed_once(bouncer, stack):
    url, api, workers = stack
    sessions = _sessions(url)
    auth = bearer(team_with_key(sessions)[1])
    peak = Counter[str]()
    stop = threading.Event()

    def watch() -> None:
        """The most clients and server connections the pooler had for the database."""
        name = url.rpartition("/")[2]
        while not stop.wait(0.2):
            pools = [p for p in bouncer.show("POOLS") if p["database"] == name]
            for p in pools:
                # .get: the columns of SHOW POOLS vary a little between PgBouncer versions
                clients = sum(int(str(p.get(k, 0))) for k in ("cl_active", "cl_waiting"))
                servers = sum(int(str(p.get(k, 0))) for k in _SERVER_STATES)
                peak["clients"] = max(peak["clients"], clients)
                peak["servers"] = max(peak["servers"], servers)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        ids, traces = _submit_and_wait(api.url, auth)
    finally:
        stop.set()
        watcher.join(5)

    with sessions() as s:
        jobs = {str(j.id): j for j in s.scalars(select(Job))}
        events = list(s.scalars(select(JobEvent).order_by(JobEvent.id)))
    logs = "\n".join(p.tail(200_000) for p in [api, *workers])
    assert sorted(jobs) == sorted(ids)  # one job per idempotency key
    assert {(j.status, j.attempts) for j in jobs.values()} == {("succeeded", 1)}, logs
    paths = Counter(
        tuple(e.to_status for e in events if str(e.job_id) == i) for i in ids
    )  # fmt: skip
    assert paths == {("queued", "running", "succeeded"): JOBS}  # claimed once, finished once
    for i, trace in traces.items():
        assert trace["iteration"] == list(range(1, ITERATIONS + 1)), i
    assert {j.worker.rsplit(":", 1)[1] for j in jobs.values()} <= {
        str(w.pid) for w in workers
    }  # fmt: skip
    assert not [line for line in logs.splitlines() if _LOG_ERRORS.search(line)]
    # the pooler's own errors (a client it had to drop, a server it could not reach)
    assert not [line for line in bouncer.log_text().splitlines() if " ERROR " in line]
    # shared for real: more clients than server connections, never more than the pool
    assert peak["servers"] <= POOL < peak["clients"], peak


# the session state a transaction-mode pooler does not keep from one transaction to the
# next: none of it may appear in the service's SQL
_SESSION_STATE = {
    "session advisory lock": re.compile(r"pg_(try_)?advisory_(un)?lock(_shared)?\b"),
    "LISTEN": re.compile(r"\bLISTEN\s+\w"),
    "session SET": re.compile(r"[\"']SET\s+(?!TRANSACTION\b|LOCAL\b|CONSTRAINTS\b)[a-z_]+\s"),
    "set_config for the session": re.compile(r"set_config\([^)]*\bfalse\s*\)", re.I),
    "temporary table": re.compile(r"\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\b"),
    "cursor WITH HOLD": re.compile(r"\bWITH\s+HOLD\b"),
    "explicit PREPARE": re.compile(r"[\"']PREPARE\s+\w+"),
}


@pytest.mark.parametrize("what", sorted(_SESSION_STATE))
def test_the_service_keeps_no_session_state_on_its_connections(what):
    pattern = _SESSION_STATE[what]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for package in ("jobs", "api", "worker", "cli", "migrations")
        for path in sorted(Path(ROOT, package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"{what} breaks behind PgBouncer in transaction mode:\n" + "\n".join(found)


def test_the_static_check_sees_what_it_looks_for():
    # the patterns above find the statements they name (else the check proves nothing)
    samples = {
        "session advisory lock": 'text("SELECT pg_advisory_lock(:k)")',
        "LISTEN": 'conn.execute("LISTEN jobs")',
        "session SET": 'text("SET statement_timeout = 5")',
        "set_config for the session": "SELECT set_config('lock_timeout', '1s', false)",
        "temporary table": "CREATE TEMP TABLE t (x int)",
        "cursor WITH HOLD": "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "explicit PREPARE": '"PREPARE q AS SELECT 1"',
    }
    assert samples.keys() == _SESSION_STATE.keys()
    for what, sample in samples.items():
        assert _SESSION_STATE[what].search(sample), what
    allowed = ['text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")',
               'text("SELECT pg_advisory_xact_lock(:k)")', '"SET LOCAL lock_timeout = 1"',
               "UPDATE jobs SET status = 'x'"]  # fmt: skip
    assert not [s for s in allowed for p in _SESSION_STATE.values() if p.search(s)]
