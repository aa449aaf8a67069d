"""The runner's trace writer thread: the loop never waits on a commit, and nothing is lost.

The writer commits batches behind the training loop; these tests hold its writes back or
make them fail and check the guarantees that worker/trace_writer.py documents: every point is
committed before success, a checkpoint never commits ahead of its points, and a lost lease
or a store given up on still stops the job.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from jobs.store import repo
from jobs.store.models import Job, TracePoint
from tests.factories import queued_job, tiny_spec
from worker.errors import LeaseLost
from worker.progress import Progress
from worker.runner import execute_job
from worker.settings import WorkerSettings
from worker.trace_writer import TraceWriter

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, lease_s=30)


def _points(s, job_id) -> tuple[int, int]:
    """(count, last iteration) of the job's trace as session ``s`` sees it."""
    n, last = s.execute(
        select(func.count(), func.coalesce(func.max(TracePoint.iteration), 0)).where(
            TracePoint.job_id == job_id
        )
    ).one()
    return n, last


class _Beat:
    state = "ok"  # a heartbeat thread that has seen nothing


def _writers(job_id) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"trace-writer-{job_id}"]


def test_the_loop_runs_ahead_of_a_blocked_write_and_every_point_lands_before_success(
    sessions, monkeypatch
):
    n = 30
    job_id = queued_job(sessions, tiny_spec(iterations=n))
    reached_end, timed_out = threading.Event(), []
    beat, save_artifact, finish = (
        repo.heartbeat_with_trace,
        repo.save_artifact,
        repo.finish_with_trace,
    )
    seen = {"checkpoints": [], "at_success": None}

    def blocked_write(s, claim, lease_s, records, **progress):
        # every write waits until the loop has run its last iteration: a loop that waited
        # on its commits would sit here for the full timeout
        if not reached_end.wait(10):
            timed_out.append(True)
        return beat(s, claim, lease_s, records, **progress)

    def spy_artifact(s, jid, kind, data, **kw):
        if kind == "checkpoint":  # every point up to the checkpoint is in its transaction
            seen["checkpoints"].append((kw["iteration"], _points(s, jid)))
        return save_artifact(s, jid, kind, data, **kw)

    def spy_finish(s, claim, status, records, **kw):
        ok = finish(s, claim, status, records, **kw)
        if status == "succeeded":
            seen["at_success"] = (_points(s, claim.job_id), len(_writers(claim.job_id)))
        return ok

    def on_record(record):
        if record["iteration"] == n:
            reached_end.set()

    monkeypatch.setattr(repo, "heartbeat_with_trace", blocked_write)
    monkeypatch.setattr(repo, "save_artifact", spy_artifact)
    monkeypatch.setattr(repo, "finish_with_trace", spy_finish)
    assert execute_job(sessions, job_id, SETTINGS, on_record=on_record) == "succeeded"
    assert not timed_out
    # the whole trace is committed, with the success, and the writer has ended by then
    assert seen["at_success"] == ((n, n), 0)
    assert seen["checkpoints"] and all(
        count == last >= it for it, (count, last) in seen["checkpoints"]
    )
    with sessions() as s:
        assert _points(s, job_id) == (n, n)
        assert s.get(Job, job_id).iteration == n


def test_a_store_that_stays_down_for_the_writer_stops_the_job_for_the_reaper(sessions, monkeypatch):
    job_id = queued_job(sessions, tiny_spec(iterations=100_000))

    def down(s, claim, lease_s, records, **progress):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(repo, "heartbeat_with_trace", down)
    settings = SETTINGS.model_copy(update={"store_patience_s": 0.3})
    assert execute_job(sessions, job_id, settings) == "store-unavailable"
    with sessions() as s:
        job = s.get(Job, job_id)
        # left running: its lease runs out and the reaper requeues it
        assert job.status == "running" and _points(s, job_id) == (0, 0)
    assert not _writers(job_id)


def test_the_writer_writes_nothing_once_the_lease_moved_on_and_the_loop_sees_it(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=10))
    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "w1", 30)
    writer = TraceWriter(sessions, claim, SETTINGS)
    writer.start()
    with sessions.begin() as s:  # the reaper gave the job to another attempt
        s.execute(update(Job).where(Job.id == job_id).values(attempts=Job.attempts + 1))
    record = {"iteration": 1, "outer_loss": 1.0}
    writer.submit([record], None, {"iteration": 1, "eta_s": None, "summary": {}})
    with pytest.raises(LeaseLost):
        writer.close()
    with pytest.raises(LeaseLost):  # and at the loop's next iteration
        Progress(SETTINGS, _Beat(), writer, 0, 10, None, None)(record, None)
    with sessions() as s:
        assert _points(s, job_id) == (0, 0)


def test_a_cancel_seen_by_the_writer_reaches_the_loop(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=10))
    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "w1", 30)
        s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    writer = TraceWriter(sessions, claim, SETTINGS)
    writer.start()
    stream = Progress(SETTINGS, _Beat(), writer, 0, 10, None, None)
    stream.flush(None)
    writer.close()
    assert stream.cancelled
