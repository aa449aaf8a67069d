"""trace_blocks kept from the batches in hand equals trace_blocks recomputed from the points."""

from __future__ import annotations

import math
import random

import pytest
from sqlalchemy import select

from jobs import parse_spec
from jobs.store import repo
from jobs.store.models import TRACE_BLOCK, trace_blocks
from jobs.store.repo.trace_writes import block_of, refresh_blocks
from tests.factories import team_with_key, tiny_spec


def _blocks(sessions, job_id) -> list[tuple]:
    with sessions() as s:
        rows = s.execute(
            select(trace_blocks)
            .where(trace_blocks.c.job_id == job_id)
            .order_by(trace_blocks.c.block)
        ).all()
    return [tuple(r)[1:] for r in rows]


@pytest.mark.parametrize("store", ["postgres", "sqlite"])
def test_rollup_from_batches_equals_recomputing_it_from_the_points(request, store):
    sessions = request.getfixturevalue(f"{'pg' if store == 'postgres' else 'sqlite'}_sessions")
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
    rng = random.Random(7)
    n = 9 * TRACE_BLOCK + 5
    # few distinct values, so that ties are common; NaN and infinity are stored as NULL
    pool = [0.0, 1.0, -1.0, 2.5, float("nan"), float("inf")]
    records = [
        {"iteration": i, "outer_loss": rng.choice(pool), "grad_norm": float(i % 3),
         "cosine": rng.choice(pool) if i % 5 == 0 else float("nan")}
        for i in range(1, n + 1)
    ]  # fmt: skip
    cuts = sorted(rng.sample(range(1, n), 12))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, n])]
    for k, batch in enumerate(batches):
        with sessions.begin() as s:
            repo.write_trace(s, job.id, batch)
        if k % 3 == 0:  # a retried commit that did land: the same batch again
            with sessions.begin() as s:
                repo.write_trace(s, job.id, batch)
    incremental = _blocks(sessions, job.id)
    with sessions.begin() as s:
        refresh_blocks(s, job.id, 1, n)
    assert incremental == _blocks(sessions, job.id)
    assert len(incremental) == 10
    # and both are the true extremes, ties at the earliest iteration
    names = [c.name for c in trace_blocks.c][1:]
    for row in incremental:
        row = dict(zip(names, row))
        pts = [
            (r["outer_loss"], r["iteration"])
            for r in records
            if block_of(r["iteration"]) == row["block"] and math.isfinite(r["outer_loss"])
        ]
        lo, hi = min(v for v, _ in pts), max(v for v, _ in pts)
        assert (row["outer_loss_min"], row["outer_loss_min_it"]) == min(pts)
        assert row["outer_loss_max"] == hi and row["outer_loss_max_it"] == min(
            it for v, it in pts if v == hi
        )
        assert lo <= hi
