"""job cycle functions: a running job's heartbeat with its trace batch, and its finish, in one call

After the claim (0020) the rest of a job's cycle bounded the pool on a 2-core machine: each
flush of a trace batch with its heartbeat was three statements (the points, their
``trace_blocks`` rollups, the fenced lease update) and cost ~2.4 ms of CPU, most of it
Python building and sending them; the finish was the same plus an ORM flush of the job's
event. ``bilevel_beat`` and ``bilevel_finish`` do each in one round trip, fenced first: a
stale attempt or a lost lease changes nothing and writes no point, as
``jobs.store.repo.job_cycle``'s Python reference (the embedded SQLite store's path) does.

The functions are frozen with this revision: a change is a new migration that replaces them
(``CREATE OR REPLACE``). PostgreSQL only.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 07:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the model's constants (jobs.store.models.traces), repeated: a migration is frozen in time
_FIELDS = ("outer_loss", "grad_norm", "lr", "time_s", "exact_norm", "cosine", "rel_error",
           "descent_ratio", "peak_bytes")  # fmt: skip
_BLOCK = 64
_ARRAYS = ", ".join(f"p_{f} float8[]" for f in _FIELDS)
_ARRAY_TYPES = ", ".join("float8[]" for _ in _FIELDS)
_ARGS = ", ".join(f"p_{f}" for f in _FIELDS)


def _rollup_columns() -> str:
    """A block's extremes of each field, ``trace_writes._extreme``: the least (value,
    iteration) pair, and the greatest value at its earliest iteration; NULL where no value.

    As the least and greatest arrays ``[value, iteration]`` and ``[value, -iteration]`` (array
    order is the pairs' order; an iteration is exact as a float8): plain aggregates, where
    an ordered one per column would sort the batch 36 times.
    """
    out = []
    for f in _FIELDS:
        lo = f"min(ARRAY[p.{f}, p.it::float8]) FILTER (WHERE p.{f} IS NOT NULL)"
        hi = f"max(ARRAY[p.{f}, -p.it::float8]) FILTER (WHERE p.{f} IS NOT NULL)"
        out += [f"({lo})[1]", f"({lo})[2]::integer", f"({hi})[1]", f"(-({hi})[2])::integer"]
    return ",\n         ".join(out)


def _merged_columns() -> str:
    """``trace_writes._upsert_blocks``: the batch's extreme wins when more extreme, or as
    extreme and earlier; NULL never wins over a value."""
    out = []
    for f in _FIELDS:
        for part, better in (("min", "<"), ("max", ">")):
            v, it = f"{f}_{part}", f"{f}_{part}_it"
            wins = (f"b.{v} IS NULL OR EXCLUDED.{v} {better} b.{v}"
                    f" OR (EXCLUDED.{v} = b.{v} AND EXCLUDED.{it} < b.{it})")  # fmt: skip
            for col in (v, it):
                out.append(f"{col} = CASE WHEN {wins} THEN EXCLUDED.{col} ELSE b.{col} END")
    return ",\n    ".join(out)


_BLOCK_COLUMNS = ", ".join(
    f"{f}_{part}" for f in _FIELDS for part in ("min", "min_it", "max", "max_it")
)

# A batch of points (ON CONFLICT DO NOTHING: a retried commit that did land) and its blocks'
# rollups merged into the stored ones (trace_writes.write_trace); nothing is read back.
_TRACE_WRITE = f"""
CREATE OR REPLACE FUNCTION bilevel_trace_write(job uuid, its integer[], {_ARRAYS})
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(cardinality(its), 0) = 0 THEN
    RETURN;
  END IF;
  INSERT INTO trace_points (job_id, iteration, {", ".join(_FIELDS)})
  SELECT job, * FROM unnest(its, {_ARGS})
  ON CONFLICT (job_id, iteration) DO NOTHING;
  INSERT INTO trace_blocks AS b (job_id, block, {_BLOCK_COLUMNS})
  SELECT job, p.block,
         {_rollup_columns()}
  FROM (SELECT floor((u.it - 1) / {_BLOCK}.0)::integer AS block, u.*
        FROM unnest(its, {_ARGS}) AS u(it, {", ".join(_FIELDS)})) AS p
  GROUP BY p.block
  ON CONFLICT (job_id, block) DO UPDATE SET
    {_merged_columns()};
END
$$
"""

# lifecycle.heartbeat, then the batch: the fenced lease renewal (and progress when
# `progress`; a NULL summary leaves it); both flags NULL when the lease was lost.
_BEAT = f"""
CREATE OR REPLACE FUNCTION bilevel_beat(
  job uuid, attempt integer, lease_until_utc timestamp, now_utc timestamp, progress boolean,
  new_iteration integer, new_eta float8, new_summary jsonb, its integer[], {_ARRAYS},
  OUT cancel_requested boolean, OUT preempt_requested boolean)
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE jobs j SET lease_until = lease_until_utc,
    iteration = CASE WHEN progress THEN new_iteration ELSE j.iteration END,
    eta_s = CASE WHEN progress THEN new_eta ELSE j.eta_s END,
    updated_at = CASE WHEN progress THEN now_utc ELSE j.updated_at END,
    summary = coalesce(new_summary, j.summary)
  WHERE j.id = job AND j.status = 'running' AND j.attempts = attempt
  RETURNING j.cancel_requested, j.preempt_requested INTO cancel_requested, preempt_requested;
  IF FOUND THEN
    PERFORM bilevel_trace_write(job, its, {_ARGS});
  END IF;
END
$$
"""

# lifecycle.finish_job, then the batch: the fenced end (finished_at and eta_s only when
# `terminal`; NULL summary, error, iteration leave them) and its job event; false when the
# lease was lost (nothing written).
_FINISH = f"""
CREATE OR REPLACE FUNCTION bilevel_finish(
  job uuid, attempt integer, new_status text, now_utc timestamp, terminal boolean,
  new_eta float8, new_summary jsonb, new_error jsonb, new_iteration integer, detail jsonb,
  its integer[], {_ARRAYS})
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  UPDATE jobs j SET status = new_status, updated_at = now_utc, lease_until = NULL,
    finished_at = CASE WHEN terminal THEN now_utc ELSE j.finished_at END,
    eta_s = CASE WHEN terminal THEN new_eta ELSE j.eta_s END,
    summary = coalesce(new_summary, j.summary), error = coalesce(new_error, j.error),
    iteration = coalesce(new_iteration, j.iteration)
  WHERE j.id = job AND j.status = 'running' AND j.attempts = attempt;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  INSERT INTO job_events (job_id, at, from_status, to_status, attempt, detail)
  VALUES (job, now_utc, 'running', new_status, attempt, detail);
  PERFORM bilevel_trace_write(job, its, {_ARGS});
  RETURN true;
END
$$
"""

_FUNCTIONS = (
    "bilevel_beat(uuid, integer, timestamp, timestamp, boolean, integer, float8, jsonb,"
    f" integer[], {_ARRAY_TYPES})",
    "bilevel_finish(uuid, integer, text, timestamp, boolean, float8, jsonb, jsonb, integer,"
    f" jsonb, integer[], {_ARRAY_TYPES})",
    f"bilevel_trace_write(uuid, integer[], {_ARRAY_TYPES})",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for ddl in (_TRACE_WRITE, _BEAT, _FINISH):
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
