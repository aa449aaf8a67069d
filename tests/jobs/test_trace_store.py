"""The trace store at size: hash partitions by job, retention, compaction into the rollups.

Jobs here finish in the year 2000 and passes run at ``NOW`` (2001): the retention windows
reach no job of the other tests sharing the database, which finish today.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from jobs import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import (
    TRACE_BLOCK,
    TRACE_PARTITIONS,
    Job,
    Study,
    StudyMember,
    TraceCompaction,
    TracePoint,
    trace_blocks,
)
from jobs.store.repo.trace_compaction import compact_job, due_query
from jobs.store.repo.trace_writes import refresh_blocks
from tests.factories import team_with_key, tiny_spec

NOW = datetime(2001, 1, 1, tzinfo=UTC)
N = 5 * TRACE_BLOCK + 17  # a partial last block


def _loss(i: int) -> float:
    """A parabola with its minimum at 100 (block 1) and ties at 100 +- k."""
    return float((i - 100) ** 2)


def _finished_job(sessions, team_id, finished_at: datetime, n: int = N) -> uuid.UUID:
    """A succeeded job with an ``n``-point trace: loss ``_loss(i)``, grad norm ``i``, lr 0.1."""
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
        records = [{"iteration": i, "outer_loss": _loss(i), "grad_norm": float(i), "lr": 0.1}
                   for i in range(1, n + 1)]  # fmt: skip
        repo.write_trace(s, job.id, records)
        s.execute(
            update(Job).where(Job.id == job.id)
            .values(status=JobStatus.SUCCEEDED, finished_at=finished_at, iteration=n)
        )  # fmt: skip
    return job.id


def _blocks(session, job_id) -> list[tuple]:
    rows = session.execute(
        select(trace_blocks).where(trace_blocks.c.job_id == job_id).order_by(trace_blocks.c.block)
    ).all()
    return [tuple(r)[1:] for r in rows]


def _points(session, job_id) -> int:
    return len(
        session.scalars(select(TracePoint.iteration).where(TracePoint.job_id == job_id)).all()
    )


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_sessions")


def test_rows_land_in_the_hash_partition_of_their_job_and_read_back_across(pg_sessions):
    team_id, _ = team_with_key(pg_sessions)
    jobs = [_finished_job(pg_sessions, team_id, NOW, n=10) for _ in range(24)]
    with pg_sessions() as s:
        parts = s.execute(text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'trace_points'::regclass"
        )).all()  # fmt: skip
        assert len(parts) == TRACE_PARTITIONS
        kind = "SELECT relkind FROM pg_class WHERE oid = 'trace_points'::regclass"
        assert s.scalar(text(kind)) == "p"
        remainder = {name: int(bound.rsplit(" ", 1)[1].rstrip(")")) for name, bound in parts}
        where = s.execute(text(
            "SELECT job_id, min(tableoid::regclass::text), count(DISTINCT tableoid)"
            " FROM trace_points WHERE job_id = ANY(:ids) GROUP BY job_id"
        ), {"ids": jobs}).all()  # fmt: skip
        # each job's rows in one partition, the one its hash names
        assert len(where) == len(jobs) and all(one == 1 for _, _, one in where)
        for job_id, part, _ in where:
            r = remainder[part.split(".")[-1]]
            assert s.scalar(text(
                "SELECT satisfies_hash_partition('trace_points'::regclass, :m, :r,"
                " CAST(:j AS uuid))"
            ), {"m": TRACE_PARTITIONS, "r": r, "j": job_id})  # fmt: skip
        assert len({p for _, p, _ in where}) > 1  # 24 jobs spread over 16 partitions
        # a read names one job and is pruned to its partition; a scan reads every one
        # the node reading it may be an index scan or a bitmap heap scan over its index
        # (whose name starts with the partition's), as the planner likes: both named here
        home = next(p for j, p, _ in where if str(j) == str(jobs[0])).split(".")[-1]
        for index_scan in ("on", "off"):
            s.execute(text(f"SET LOCAL enable_indexscan = {index_scan}"))
            plan = "\n".join(s.execute(text(
                "EXPLAIN SELECT * FROM trace_points WHERE job_id = :j AND iteration > 3"
            ), {"j": jobs[0]}).scalars())  # fmt: skip
            assert set(re.findall(r" on (trace_points_\d+)", plan)) == {home}, plan
        s.execute(text("RESET enable_indexscan"))
        total = s.scalar(select(func.count()).where(TracePoint.job_id.in_(jobs)))
        assert total == 10 * len(jobs)
        s.execute(text("ANALYZE trace_points"))  # the estimate reads the partitions' counts
        assert repo.estimated_trace_points(s) >= total
        for j in jobs[:3]:
            assert repo.trace_columns(s, j, fields=["grad_norm"])["grad_norm"] == [
                float(i) for i in range(1, 11)
            ]


def test_compaction_keeps_exactly_the_rollups_of_the_points(sessions):
    team_id, _ = team_with_key(sessions)
    job_id = _finished_job(sessions, team_id, NOW - timedelta(days=30))
    with sessions.begin() as s:
        # the rollups are recomputed from the points, whatever was stored: one block wrong,
        # one missing
        mine = trace_blocks.c.job_id == job_id
        s.execute(trace_blocks.update().where(mine, trace_blocks.c.block == 1)
                  .values(outer_loss_min=-1.0))  # fmt: skip
        s.execute(trace_blocks.delete().where(mine, trace_blocks.c.block == 3))
        assert compact_job(s, job_id) == N
    with sessions() as s:
        assert _points(s, job_id) == 0
        rows = s.execute(select(trace_blocks).where(trace_blocks.c.job_id == job_id)
                         .order_by(trace_blocks.c.block)).mappings().all()  # fmt: skip
        rec = s.get(TraceCompaction, job_id)
    assert (rec.points, rec.first_iteration, rec.last_iteration) == (N, 1, N)
    assert len(rows) == -(-N // TRACE_BLOCK)
    for r in rows:
        lo, hi = r["block"] * TRACE_BLOCK + 1, min(N, (r["block"] + 1) * TRACE_BLOCK)
        # closed forms: i is increasing; (i - 100)^2 has its minimum at the point nearest 100
        # and its maximum at the end farther from 100 (the earlier one on a tie)
        assert (r["grad_norm_min"], r["grad_norm_min_it"]) == (lo, lo)
        assert (r["grad_norm_max"], r["grad_norm_max_it"]) == (hi, hi)
        at = min(max(100, lo), hi)
        assert (r["outer_loss_min"], r["outer_loss_min_it"]) == (_loss(at), at)
        far = lo if abs(lo - 100) >= abs(hi - 100) else hi
        assert (r["outer_loss_max"], r["outer_loss_max_it"]) == (_loss(far), far)
        assert (r["lr_min"], r["lr_min_it"], r["lr_max"], r["lr_max_it"]) == (0.1, lo, 0.1, lo)
        assert r["cosine_min"] is None and r["cosine_min_it"] is None


def test_the_retention_boundary_and_a_second_pass_that_finds_nothing(sessions):
    team_id, _ = team_with_key(sessions)
    keep = timedelta(days=10)
    # an era of its own: no other test's job is due at `now`
    now = datetime(1990, 1, 1, tzinfo=UTC)
    inside = _finished_job(sessions, team_id, now - keep + timedelta(seconds=1), n=70)
    outside = _finished_job(sessions, team_id, now - keep - timedelta(seconds=1), n=70)
    running = _finished_job(sessions, team_id, now - 2 * keep, n=5)
    searching = _finished_job(sessions, team_id, now - 2 * keep, n=5)
    with sessions.begin() as s:  # a job not finished is never compacted, however old
        s.execute(update(Job).where(Job.id == running).values(status=JobStatus.RUNNING))
        # nor a member of a search still adding members (its pruner reads their points)
        study = Study(team_id=team_id, name="search", base={}, grid={}, group_by=[], skipped=[],
                      kind="search", search={}, search_done=False)  # fmt: skip
        s.add(study)
        s.flush()
        s.add(StudyMember(study_id=study.id, position=0, job_id=searching, values={}))
    with sessions() as s:
        before = _blocks(s, outside)
    done = repo.compact_due(sessions, keep, batch=1, now=now)
    assert (done.jobs, done.points, done.done) == (1, 70, True)
    again = repo.compact_due(sessions, keep, batch=1, now=now)
    assert (again.jobs, again.points) == (0, 0)
    with sessions() as s:
        assert _points(s, inside) == 70 and _points(s, running) == 5
        assert _points(s, searching) == 5
        assert _points(s, outside) == 0 and _blocks(s, outside) == before
        assert s.get(TraceCompaction, inside) is None
        # compacting one job again changes nothing
        assert compact_job(s, outside) == 0 and _blocks(s, outside) == before


def test_a_compacted_trace_reads_at_block_resolution_with_its_span(sessions):
    team_id, _ = team_with_key(sessions)
    job_id = _finished_job(sessions, team_id, NOW - timedelta(days=30))
    with sessions() as s:
        stale = repo.trace_span_of(s, job_id, 0)  # read before the compaction commits
        full = repo.trace_columns(s, job_id, fields=["outer_loss", "grad_norm"])
    repo.compact_due(sessions, timedelta(days=1), now=NOW)
    with sessions() as s:
        span = repo.trace_span_of(s, job_id, 0)
        assert span == (N, 1, N, True) and not stale.compacted
        assert repo.trace_span(s, job_id, 200) == (N - 200, 201, N)
        cols = repo.trace_columns(s, job_id, fields=["outer_loss", "grad_norm"], span=span)
        # a reader whose span predates the compaction gets the same answer
        assert repo.trace_columns(s, job_id, fields=["outer_loss", "grad_norm"], span=stale) == cols
        blocks = _blocks(s, job_id)
        tail = repo.trace_columns(s, job_id, after=200, fields=["grad_norm"])
        small = repo.trace_columns(s, job_id, max_points=8, fields=["outer_loss", "grad_norm"])
        only_its = repo.trace_columns(s, job_id, fields=[])
    # rows: every block's extremes' iterations, each value the full trace's at it
    named = {it for b in blocks for it in b[2::2][:4] if it is not None}
    assert cols["iteration"] == sorted(named) == only_its["iteration"]
    at = dict(zip(full["iteration"], zip(full["outer_loss"], full["grad_norm"])))
    for it, lo, g in zip(cols["iteration"], cols["outer_loss"], cols["grad_norm"]):
        assert lo in (None, at[it][0]) and g in (None, at[it][1]) and (lo, g) != (None, None)
    assert min(v for v in cols["outer_loss"] if v is not None) == 0.0  # the best loss survives
    assert tail["iteration"][0] > 200 and tail["grad_norm"][-1] == float(N)
    assert 0 < len(small["iteration"]) <= 8 and 100 in small["iteration"]


def test_rewind_and_resume_are_unchanged_on_the_partitioned_table(sessions):
    team_id, _ = team_with_key(sessions)
    job_id = _finished_job(sessions, team_id, NOW, n=3 * TRACE_BLOCK)
    with sessions.begin() as s:
        expected = _blocks(s, job_id)
        assert repo.rewind_trace(s, job_id, TRACE_BLOCK + 5) == TRACE_BLOCK + 5
        assert repo.stored_iteration(s, job_id) == TRACE_BLOCK + 5
        repo.write_trace(s, job_id, [
            {"iteration": i, "outer_loss": _loss(i), "grad_norm": float(i), "lr": 0.1}
            for i in range(TRACE_BLOCK + 6, 3 * TRACE_BLOCK + 1)
        ])  # fmt: skip
        assert _blocks(s, job_id) == expected
        refresh_blocks(s, job_id, 1, 3 * TRACE_BLOCK)
        assert _blocks(s, job_id) == expected


def test_concurrent_passes_take_disjoint_jobs(pg_sessions):
    import threading

    team_id, _ = team_with_key(pg_sessions)
    now = datetime(1975, 1, 1, tzinfo=UTC)  # an era of its own, as above
    # and drained first: a job an earlier run of this test left due is no pass's business here
    while not repo.compact_due(pg_sessions, timedelta(days=1), now=now).done:
        pass
    ids = [_finished_job(pg_sessions, team_id, now - timedelta(days=5), n=100) for _ in range(12)]
    passes: list[repo.CompactionPass] = []

    def one() -> None:
        passes.append(repo.compact_due(pg_sessions, timedelta(days=1), batch=2, now=now))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every job compacted exactly once, by one of the passes
    assert sum(p.jobs for p in passes) == len(ids) and sum(p.points for p in passes) == 1200
    with pg_sessions() as s:
        recs = s.scalars(select(TraceCompaction).where(TraceCompaction.job_id.in_(ids))).all()
        assert sorted(r.job_id for r in recs) == sorted(ids)
        assert all(r.points == 100 for r in recs)


def test_a_pass_reads_the_due_jobs_by_their_index_and_marks_an_older_releases_compaction(
    pg_sessions,
):
    """The pass costs the jobs it takes, not every job compacted before (there are millions).

    Its read is planned on ``ix_jobs_compaction_due`` (sequential scans off, as on a store
    whose jobs table dwarfs the due jobs); a job an older release compacted, its record
    written without the flag, is marked by the next pass and never taken again.
    """
    team_id, _ = team_with_key(pg_sessions)
    now = datetime(1965, 1, 1, tzinfo=UTC)  # an era of its own, as above
    while not repo.compact_due(pg_sessions, timedelta(days=1), now=now).done:
        pass
    old = _finished_job(pg_sessions, team_id, now - timedelta(days=5), n=10)
    with pg_sessions.begin() as s:  # what an older release's pass left: a record, no flag
        s.add(TraceCompaction(job_id=old, points=10, first_iteration=1, last_iteration=10,
                              compacted_at=now))  # fmt: skip
    with pg_sessions.begin() as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))
        stmt = due_query(now - timedelta(days=1), 10)
        sql = stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {sql}")))
        assert "ix_jobs_compaction_due" in plan, plan
        assert old in s.scalars(stmt).all()
    first = repo.compact_due(pg_sessions, timedelta(days=1), now=now)
    assert (first.jobs, first.points) == (1, 0)  # taken once, its points left as they were
    again = repo.compact_due(pg_sessions, timedelta(days=1), now=now)
    assert again.jobs == 0
    with pg_sessions() as s:
        assert s.get(Job, old).trace_compacted and _points(s, old) == 10
