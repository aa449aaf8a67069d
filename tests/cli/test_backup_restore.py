"""``bilevel backup`` and ``bilevel restore``: the store in one archive, and the service goes on.

A job is running (hung inside an iteration, its checkpoint at 3) and a data-set job is
queued when the backup is taken; the source is then lost (its job process SIGKILLed). The
archive is restored into an EMPTY store (a PostgreSQL database of its own, dropped after;
or a new SQLite state directory) and an executor started on it: the running job resumes
from its checkpoint and finishes bit for bit as an uninterrupted run, and the queued job
runs on the data set's restored bytes. Real parts: PostgreSQL, pg_dump / pg_restore, a
spawned job process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.main import main
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory, sqlite_url
from jobs.store.models import Job, TracePoint
from tests.dataset_files import digits_arrays, npz_bytes
from tests.factories import example, team_with_key, tiny_spec, wait_until
from tests.faults.hooks import hung_marker, mark_and_hang_at
from tests.faults.reference import reference
from worker.local import LocalExecutor
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.watchdog import Supervisor

SETTINGS = WorkerSettings(lease_s=30, torch_threads=1, flush_every_s=0.01, flush_every_n=1,
                          checkpoint_every_n=3)  # fmt: skip
DONE = ("succeeded", "failed", "cancelled")


def _url(sessions) -> str:
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


def _store_args(store: str, url: str, monkeypatch) -> list[str]:
    """The command-line store options of ``url`` (PostgreSQL through the environment)."""
    if store == "postgres":
        monkeypatch.setenv("DATABASE_URL", url)
        return []
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BILEVEL_DATABASE_URL", raising=False)
    return ["--state-dir", str(Path(url.removeprefix("sqlite:///")).parent)]


def _dataset_job(sessions, tmp_path) -> uuid.UUID:
    """A queued hypercleaning job on an uploaded data set (its bytes in the store's chunks)."""
    from jobs.datasets.checks import describe_file
    from jobs.specs.job import parse_spec

    data = npz_bytes(digits_arrays(n_train=100, n_val=60, seed=7))
    path = tmp_path / "digits.npz"
    path.write_bytes(data)
    team_id, _ = team_with_key(sessions)
    spec = example("hypercleaning")
    del spec["problem"]["n_train"], spec["problem"]["n_val"]
    spec["inner"]["steps"] = 5
    spec["hypergradient"] = {"method": "truncated", "K": 2}
    spec["outer"]["iterations"] = 3
    spec["diagnostics"]["every"] = 0
    with sessions.begin() as s:
        ds, _ = repo.store_dataset(s, team_id, name="digits", path=path,
                                   sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                   fmt="npz", description=describe_file(path).__dict__,
                                   chunk_bytes=4096)  # fmt: skip
        spec["problem"]["dataset"] = str(ds.id)
        job, _ = repo.create_job(s, team_id, parse_spec(spec))
    return job.id


def _trace(sessions, job_id) -> tuple[list[int], list[float | None]]:
    with sessions() as s:
        rows = s.execute(
            select(TracePoint.iteration, TracePoint.outer_loss)
            .where(TracePoint.job_id == job_id)
            .order_by(TracePoint.iteration)
        ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


@pytest.fixture(params=["postgres", "sqlite"])
def store(request):
    return request.param


@pytest.fixture
def source(store, request):
    return request.getfixturevalue("own_pg_sessions" if store == "postgres" else "sqlite_sessions")


@pytest.fixture
def empty_target(store, request, tmp_path) -> str:
    """An empty store: a new PostgreSQL database (dropped at the end), or a new state dir."""
    if store == "postgres":
        return request.getfixturevalue("fresh_database")()
    return sqlite_url(tmp_path / "restored")


def test_a_restored_store_carries_on_its_running_and_queued_jobs(
    store, source, empty_target, tmp_path, monkeypatch, capsys
):
    spec = tiny_spec(iterations=8, stall_s=600)
    team_id, _ = team_with_key(source)
    from jobs.specs.job import parse_spec

    with source.begin() as s:
        running_id = repo.create_job(s, team_id, parse_spec(spec))[0].id
    sup = Supervisor(source, SETTINGS, worker="source-worker").start(wait=True)
    pid = sup.pid
    assert pid is not None
    marker = hung_marker(pid)
    got: list[Outcome] = []
    hook = functools.partial(mark_and_hang_at, 5)
    run = threading.Thread(target=lambda: got.append(sup.execute(running_id, on_record=hook)))
    run.start()
    try:
        wait_until(marker.exists, 180, "the running job's fifth iteration", poll=0.1)
        wait_until(lambda: len(_trace(source, running_id)[0]) >= 4, 60, "points 1..4")
        queued_id = _dataset_job(source, tmp_path)  # after the claim: it stays queued
        archive = tmp_path / "store.tar"
        args = _store_args(store, _url(source), monkeypatch)
        assert main(["backup", str(archive), *args]) == 0
    finally:
        os.kill(pid, signal.SIGKILL)  # the source is lost with its job process
        run.join(180)
        marker.unlink(missing_ok=True)
        sup.close()
    assert f"backed up to {archive}" in capsys.readouterr().err
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames())[0] == "manifest.json"

    args = _store_args(store, empty_target, monkeypatch)
    assert main(["restore", str(archive), *args]) == 0, capsys.readouterr().err
    engine = make_engine(empty_target)
    target = make_session_factory(engine)
    try:
        restored = _job(target, running_id)
        assert restored.status == "running" and restored.iteration == 4
        with target() as s:
            assert repo.checkpoint_iteration(s, running_id) == 3
        assert _job(target, queued_id).status == "queued"
        executor = LocalExecutor(target, SETTINGS).start()  # the reaper requeues, then runs
        try:
            wait_until(lambda: _job(target, running_id).status in DONE
                       and _job(target, queued_id).status in DONE, 300,
                       "both restored jobs to end", poll=0.2)  # fmt: skip
        finally:
            executor.stop(timeout=30)
        done = _job(target, running_id)
        assert done.status == "succeeded", done.error
        assert done.summary["resumed_from"] == 3 and done.attempts == 2
        iterations, losses = _trace(target, running_id)
        assert iterations == list(range(1, 9))
        want, _ = reference(spec)
        assert losses == [float(v) for v in want]  # the resume was exact
        other = _job(target, queued_id)
        assert other.status == "succeeded", other.error
        assert _trace(target, queued_id)[0] == [1, 2, 3]
    finally:
        engine.dispose()


def _flip_byte_in_part(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        part = next(m for m in tar.getmembers() if m.name != "manifest.json")
        at = part.offset_data + part.size // 2
    with archive.open("r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_archive_is_refused_with_one_line_and_nothing_is_restored(
    sqlite_sessions, tmp_path, monkeypatch, capsys
):
    team_with_key(sqlite_sessions)
    archive = tmp_path / "store.tar"
    args = _store_args("sqlite", _url(sqlite_sessions), monkeypatch)
    assert main(["backup", str(archive), *args]) == 0
    _flip_byte_in_part(archive)
    capsys.readouterr()
    restored = tmp_path / "restored"
    assert main(["restore", str(archive), "--state-dir", str(restored)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bilevel: error: backup "), err
    assert "is corrupt: part store.sqlite3 has" in err and "the manifest says" in err
    assert not (restored / "bilevel.db").exists()


def test_a_restore_into_a_store_that_is_not_empty_is_refused(
    own_pg_sessions, tmp_path, monkeypatch, capsys
):
    team_with_key(own_pg_sessions)
    archive = tmp_path / "store.tar"
    monkeypatch.setenv("DATABASE_URL", _url(own_pg_sessions))
    assert main(["backup", str(archive)]) == 0
    # a second backup to the same path is refused: backups are never overwritten
    assert main(["backup", str(archive)]) == 2
    assert "exists: a backup is written to a new file" in capsys.readouterr().err
    assert main(["restore", str(archive)]) == 2
    err = capsys.readouterr().err
    assert "restore needs an empty database" in err and err.count("\n") == 1
