"""The trace poll's body written by PostgreSQL (``repo.trace_json``) is ``trace_columns``' JSON:
the same value on every path (full, after, downsampled, fields, empty, compacted), every
double parsed back bit for bit."""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from jobs import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import Job
from jobs.store.repo.trace_json import _query_for
from tests.factories import team_with_key, tiny_spec

N = 700
FIELDS = ["outer_loss", "grad_norm", "exact_norm", "cosine", "rel_error"]


def _awkward(rng: random.Random) -> float | None:
    """Doubles whose shortest decimal is long, tiny, huge, negative zero; some missing."""
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return struct.unpack("d", struct.pack("Q", rng.getrandbits(62)))[0]  # any finite bits
    if kind == 2:
        return rng.choice([-0.0, 0.1, 1e-300, 5e-324, 1.7976931348623157e308, 2.0**53 + 1])
    return rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12)


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_sessions")


def _job(sessions, n: int = N, seed: int = 0):
    rng = random.Random(seed)
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
        records = [{"iteration": i, **{f: _awkward(rng) for f in FIELDS}}
                   for i in range(1, n + 1)]  # fmt: skip
        repo.write_trace(s, job.id, records)
    return job.id, records


def _bits(cols: dict) -> dict:
    """Columns with each number as its double's bits: equal means equal to the last bit.

    Zero is zero of either sign: PostgreSQL writes -0.0 as ``-0``, which JSON readers take
    for the number 0 (Python's json for the integer 0); iterations stay integers.
    """

    def bits(k: str, v: object) -> object:
        if v is None or k == "iteration":
            return v
        return b"0" if v == 0 else struct.pack("d", float(v))  # type: ignore[arg-type]

    return {k: [bits(k, v) for v in vs] for k, vs in cols.items()}


@pytest.mark.parametrize(
    ("after", "max_points", "fields"),
    [(0, None, FIELDS), (650, None, FIELDS), (0, 4000, FIELDS), (0, 60, FIELDS),
     (100, 30, ["grad_norm"]), (0, None, []), (N, None, FIELDS),
     (0, None, ["iteration", "cosine"])],
)  # fmt: skip
def test_the_body_is_trace_columns_json_to_the_last_bit(sessions, after, max_points, fields):
    job_id, records = _job(sessions)
    with sessions() as s:
        body = repo.trace_json(s, job_id, after=after, max_points=max_points, fields=fields)
        cols = repo.trace_columns(s, job_id, after=after, max_points=max_points, fields=fields)
    got = json.loads(body)
    assert list(got) == list(cols)  # the columns in the same order
    assert _bits(got) == _bits(cols)
    if max_points is None and fields == FIELDS and after == 0:  # and they are the records
        assert _bits(got) == _bits({"iteration": [r["iteration"] for r in records],
                                    **{f: [r[f] for r in records] for f in FIELDS}})  # fmt: skip


def test_an_empty_trace_and_a_compacted_one_answer_as_trace_columns(sessions):
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
    with sessions() as s:
        assert json.loads(repo.trace_json(s, job.id, fields=["grad_norm"])) == {
            "iteration": [], "grad_norm": []}  # fmt: skip
    job_id, _ = _job(sessions, n=300, seed=2)
    now = datetime(2001, 1, 1, tzinfo=UTC)
    with sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.SUCCEEDED, finished_at=now - timedelta(days=30), iteration=300)
        )
    with sessions() as s:
        stale = repo.trace_span_of(s, job_id, 0)  # read before the compaction commits
    repo.compact_due(sessions, timedelta(days=1), now=now)
    with sessions() as s:
        for span in (None, stale):  # fresh, and a reader whose span predates the compaction
            body = repo.trace_json(s, job_id, fields=FIELDS, span=span)
            cols = repo.trace_columns(s, job_id, fields=FIELDS)
            assert cols["iteration"] and _bits(json.loads(body)) == _bits(cols)


def test_only_the_tables_columns_are_written_into_the_statement():
    with pytest.raises(ValueError, match="unknown trace field"):
        _query_for(("outer_loss; DROP TABLE jobs",), False)
