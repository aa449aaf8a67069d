"""team counts: each (queue, team)'s queued and running jobs, kept exact by triggers on jobs

0020's claim snapshot probed ``ix_jobs_queued_head`` once for every team and grouped the
running jobs on every call: ~0.9 ms of the claim's ~1.4 ms of backend CPU at 100 teams,
200 workers and 50,000 queued jobs (``benchmarks.service.claim_cpu``), and PostgreSQL's CPU
bounds the claims per second on a 2-core machine. ``job_team_counts`` holds per
``(queue, team_id)`` the jobs ``queued`` (and no cancel requested: what the claim can take)
and ``running``; row triggers on ``jobs`` keep it exact in the writer's own transaction, so
the snapshot reads one row per team with work. It is still only the claim's *order*: the
recount under the team's lock (``bilevel_claim_take``, unchanged) is its guarantee.

The triggers fire only on a change of a row's contribution: ``UPDATE OF`` the four columns
it depends on and a ``WHEN`` comparing the contributions, so a heartbeat (the hot update)
and a cancel asked of a running job run no trigger function at all. ``TRUNCATE jobs``
empties the table. The backfill runs after the triggers exist: ``CREATE TRIGGER`` holds a
lock that waits for the writers in flight and keeps new ones out until this commits.

Locks and deadlocks. A counts row is locked from the writer's update to its commit, so the
jobs of one (queue, team) that change in the same moment serialise on it (claims of a team
already do, on the team's lock). A statement's AFTER row triggers run at its end, after it
locked its job rows, so the rule that keeps this free of deadlocks is: *a transaction takes
its job rows, then counts rows in (queue, team_id) order, and waits for no job row after
holding a counts row*. Every writer keeps it: a claim, a finish, a release, a submission
and a single cancel touch one counts row after their job row (a study's submission is one
team's jobs, inserted queue by queue); the reaper writes its stale queued jobs (resent)
first, then locks all its expired ones (``FOR UPDATE SKIP LOCKED``) and requeues them in
(queue, team_id) order; a study's cancel locks all its members before it cancels any. A
writer that broke it would at worst meet PostgreSQL's deadlock detector (one transaction
aborted after ``deadlock_timeout``, an ``OperationalError``: the worker's store calls retry
it, an API request answers 503), never wrong counts: each trigger's change commits or rolls
back with its job row. ``tests/jobs/test_team_counts.py`` runs the writers at once.

The embedded SQLite store has the table (one schema for both) but no triggers: its claim
counts its jobs in Python, and the table stays empty there.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a job row's contribution to its (queue, team) row; at this revision's statuses
_QUEUED = "(R.status = 'queued' AND NOT R.cancel_requested)"
_RUNNING = "(R.status = 'running')"


def _of(row: str, expr: str) -> str:
    return expr.replace("R.", f"{row}.")


# The old row's contribution taken away, the new one's added: one change of one counts row,
# or of two in key order when the job moves to another (queue, team) (no caller moves one
# today). In PL/pgSQL, which keeps each statement's plan for the session: a call of an SQL
# function plans its body again, and cost 0.4 ms a change.
_ROW = f"""
CREATE OR REPLACE FUNCTION bilevel_job_counts_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  oq integer := 0;
  orun integer := 0;
  nq integer := 0;
  nrun integer := 0;
  q text;
  t uuid;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    oq := {_of("OLD", _QUEUED)}::integer;
    orun := {_of("OLD", _RUNNING)}::integer;
    q := OLD.queue;
    t := OLD.team_id;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    nq := {_of("NEW", _QUEUED)}::integer;
    nrun := {_of("NEW", _RUNNING)}::integer;
    IF TG_OP = 'UPDATE' AND (q <> NEW.queue OR t <> NEW.team_id) THEN
      INSERT INTO job_team_counts AS c (queue, team_id, queued, running)
      SELECT d.q, d.t, d.dq, d.dr
      FROM (VALUES (q, t, -oq, -orun), (NEW.queue::text, NEW.team_id, nq, nrun))
        AS d(q, t, dq, dr)
      WHERE d.dq <> 0 OR d.dr <> 0
      ORDER BY d.q, d.t
      ON CONFLICT (queue, team_id) DO UPDATE
      SET queued = c.queued + EXCLUDED.queued, running = c.running + EXCLUDED.running;
      RETURN NULL;
    END IF;
    q := NEW.queue;
    t := NEW.team_id;
  END IF;
  INSERT INTO job_team_counts AS c (queue, team_id, queued, running)
  VALUES (q, t, nq - oq, nrun - orun)
  ON CONFLICT (queue, team_id) DO UPDATE
  SET queued = c.queued + EXCLUDED.queued, running = c.running + EXCLUDED.running;
  RETURN NULL;
END
$$
"""

_TRUNCATE = """
CREATE OR REPLACE FUNCTION bilevel_job_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM job_team_counts;
  RETURN NULL;
END
$$
"""

_COUNTS = f"{_of('NEW', _QUEUED)} OR {_of('NEW', _RUNNING)}"
_GONE = f"{_of('OLD', _QUEUED)} OR {_of('OLD', _RUNNING)}"
_CHANGED = (
    "OLD.queue IS DISTINCT FROM NEW.queue OR OLD.team_id IS DISTINCT FROM NEW.team_id"
    f" OR {_of('OLD', _QUEUED)} IS DISTINCT FROM {_of('NEW', _QUEUED)}"
    f" OR {_of('OLD', _RUNNING)} IS DISTINCT FROM {_of('NEW', _RUNNING)}"
)
_TRIGGERS = (
    "CREATE TRIGGER job_team_counts_insert AFTER INSERT ON jobs FOR EACH ROW"
    f" WHEN ({_COUNTS}) EXECUTE FUNCTION bilevel_job_counts_row()",
    "CREATE TRIGGER job_team_counts_update"
    " AFTER UPDATE OF status, cancel_requested, queue, team_id ON jobs FOR EACH ROW"
    f" WHEN ({_CHANGED}) EXECUTE FUNCTION bilevel_job_counts_row()",
    "CREATE TRIGGER job_team_counts_delete AFTER DELETE ON jobs FOR EACH ROW"
    f" WHEN ({_GONE}) EXECUTE FUNCTION bilevel_job_counts_row()",
    "CREATE TRIGGER job_team_counts_truncate AFTER TRUNCATE ON jobs FOR EACH STATEMENT"
    " EXECUTE FUNCTION bilevel_job_counts_truncate()",
)

_BACKFILL = f"""
INSERT INTO job_team_counts (queue, team_id, queued, running)
SELECT R.queue, R.team_id, count(*) FILTER (WHERE {_QUEUED}), count(*) FILTER (WHERE {_RUNNING})
FROM jobs R
WHERE {_QUEUED} OR {_RUNNING}
GROUP BY R.queue, R.team_id
"""

# Each team with queued work of `kind`: its weight and limit (the row's, else the defaults),
# its running jobs, its queued ones capped at `heads`, as arrays in one row (no team: NULL
# arrays): 0020's outputs, from the counts instead of a probe per team. PL/pgSQL keeps the
# plan for the session (as an SQL function, planning it was 0.09 of its 0.23 ms a call).
_SNAPSHOT = """
CREATE OR REPLACE FUNCTION bilevel_claim_snapshot(
  kind text, default_weight float8, default_limit integer, gpu boolean, heads integer,
  OUT ids uuid[], OUT weights float8[], OUT running integer[], OUT queued integer[],
  OUT limits integer[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT array_agg(t.id),
         array_agg(coalesce(t.weight, default_weight)),
         array_agg(c.running),
         array_agg(least(c.queued, heads)),
         array_agg(coalesce(CASE WHEN gpu THEN t.max_running_gpu ELSE t.max_running_cpu END,
                            default_limit))
  INTO ids, weights, running, queued, limits
  FROM job_team_counts c
  JOIN teams t ON t.id = c.team_id
  WHERE c.queue = kind AND c.queued > 0;
END
$$
"""

# 0020's snapshot, as that revision wrote it: what a downgrade puts back
_SNAPSHOT_0020 = """
CREATE OR REPLACE FUNCTION bilevel_claim_snapshot(
  kind text, default_weight float8, default_limit integer, gpu boolean, heads integer,
  OUT ids uuid[], OUT weights float8[], OUT running integer[], OUT queued integer[],
  OUT limits integer[])
LANGUAGE sql STABLE AS $$
  SELECT array_agg(t.id),
         array_agg(coalesce(t.weight, default_weight)),
         array_agg(coalesce(r.n, 0)::integer),
         array_agg(q.n::integer),
         array_agg(coalesce(CASE WHEN gpu THEN t.max_running_gpu ELSE t.max_running_cpu END,
                            default_limit))
  FROM teams t
  JOIN LATERAL (
    SELECT count(*) AS n FROM (
      SELECT 1 FROM jobs h
      WHERE h.team_id = t.id AND h.queue = kind AND h.status = 'queued'
        AND h.cancel_requested = false
      ORDER BY h.priority DESC, h.created_at, h.id
      LIMIT heads) AS head) AS q ON q.n > 0
  LEFT JOIN (
    SELECT j.team_id, count(*) AS n FROM jobs j
    WHERE j.queue = kind AND j.status = 'running' GROUP BY j.team_id) AS r
    ON r.team_id = t.id
$$
"""

_NAMES = ("insert", "update", "delete", "truncate")
_FUNCTIONS = ("bilevel_job_counts_row()", "bilevel_job_counts_truncate()")


def upgrade() -> None:
    # derived from jobs, so no foreign key: a deleted team's jobs bring its rows to zero
    op.create_table(
        "job_team_counts",
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("queued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("running", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("queue", "team_id", name=op.f("pk_job_team_counts")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for ddl in (_ROW, _TRUNCATE, *_TRIGGERS, _BACKFILL, _SNAPSHOT):
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_SNAPSHOT_0020)
        for name in _NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS job_team_counts_{name} ON jobs")
        for signature in _FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.drop_table("job_team_counts")
