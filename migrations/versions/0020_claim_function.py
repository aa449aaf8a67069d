"""claim function: the PostgreSQL fair-share claim as one round trip to the server

``bilevel_claim`` does in the database what ``jobs.store.repo.claims`` did in up to a dozen
statements from Python (snapshot, turns, team locks, guarded take, job event): the claim
cost about 6.7 ms of CPU, most of it Python building, sending and decoding statements.
The rule itself is unchanged; ``bilevel_claim_turns`` is the closed form of
``jobs.fairshare.pick_order(first=...)`` and a property test compares the two.

The functions are frozen with this revision: a change of the claim is a new migration that
replaces them (``CREATE OR REPLACE``), so that a store's claim is the one its revision says.
PostgreSQL only: the embedded SQLite store keeps its serialised claim in Python.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 04:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lower 32 bits of a team's id, shifted to a signed int4: the claim lock's second half,
# the same key as the Python claim of 0019 took (a rolling upgrade mixes the two).
_TEAM_KEY = """
CREATE OR REPLACE FUNCTION bilevel_claim_team_key(team uuid) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (('x' || right(replace(team::text, '-', ''), 8))::bit(32)::bigint - 2147483648)::integer
$$
"""

# pick_order's first `turns` picks in closed form: a team's k-th next pick (k < its queued
# heads, running + k below its limit) has the key ((running + k) / weight, -weight, id);
# the picks are those keys merged (uuid order is the order of its text, the Python name).
_TURNS = """
CREATE OR REPLACE FUNCTION bilevel_claim_turns(
  teams uuid[], weights float8[], running integer[], queued integer[], limits integer[],
  heads integer, turns integer)
RETURNS TABLE (team uuid, before integer, team_limit integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT t.id, t.r + k, t.lim
  FROM unnest(teams, weights, running, queued, limits) AS t(id, w, r, q, lim)
  CROSS JOIN LATERAL generate_series(0, least(t.q, heads) - 1) AS k
  WHERE t.r + k < t.lim
  ORDER BY (t.r + k)::float8 / t.w, -t.w, t.id
  LIMIT turns
$$
"""

# Each team with queued work of `kind`: its weight and limit (the row's, else the defaults),
# its running jobs and its first `heads` queued ones counted (a probe of ix_jobs_queued_head
# each), as arrays in one row (no team: NULL arrays).
_SNAPSHOT = """
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

# Under the team's lock: recount its running jobs (a new statement: every earlier claim of
# the team has committed) and take its head job only if the turn is still open.
_TAKE = """
CREATE OR REPLACE FUNCTION bilevel_claim_take(
  kind text, team uuid, before integer, team_limit integer, check_turn boolean,
  worker_name text, now_utc timestamp, lease_until_utc timestamp,
  OUT taken uuid, OUT taken_attempt integer)
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  SELECT count(*) INTO n FROM jobs r
  WHERE r.team_id = team AND r.queue = kind AND r.status = 'running';
  IF n >= team_limit OR (check_turn AND n > before) THEN
    RETURN;
  END IF;
  UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, worker = worker_name,
    lease_until = lease_until_utc, started_at = coalesce(jobs.started_at, now_utc),
    running_since = now_utc, preempt_requested = false, updated_at = now_utc
  WHERE jobs.id = (
      SELECT h.id FROM jobs h
      WHERE h.team_id = team AND h.queue = kind AND h.status = 'queued'
        AND h.cancel_requested = false
      ORDER BY h.priority DESC, h.created_at, h.id
      LIMIT 1 FOR UPDATE SKIP LOCKED)
    AND jobs.status = 'queued' AND jobs.cancel_requested = false
  RETURNING jobs.id, jobs.attempts INTO taken, taken_attempt;
  IF taken IS NOT NULL THEN
    INSERT INTO job_events (job_id, at, from_status, to_status, attempt, detail)
    VALUES (taken, now_utc, 'queued', 'running', taken_attempt,
            jsonb_build_object('worker', worker_name));
  END IF;
END
$$
"""

# One snapshot's turns, tried in order (jobs.store.repo.claims' module docstring): a busy
# team's first turn is left to its holder, its next one waited for; outcome 'taken',
# 'full' (every team at its limit) or 'again' (every turn was taken meanwhile). `held`: this
# claim holds a team's lock (from an earlier round too, the locks last until commit); a
# claim that holds one never waits for another, so no two claims wait for each other.
_ROUND = """
CREATE OR REPLACE FUNCTION bilevel_claim_round(
  kind text, worker_name text, now_utc timestamp, lease_until_utc timestamp,
  team_space integer, teams uuid[], befores integer[], limits integer[], INOUT held boolean,
  OUT taken uuid, OUT taken_attempt integer, OUT outcome text)
LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  busy uuid[] := '{}';
  first_busy integer;
BEGIN
  FOR i IN 1 .. coalesce(cardinality(teams), 0) LOOP
    IF pg_try_advisory_xact_lock(team_space, bilevel_claim_team_key(teams[i])) THEN
      held := true;
    ELSIF NOT teams[i] = ANY (busy) THEN
      busy := busy || teams[i];  -- the claim holding the team's lock takes this turn
      first_busy := coalesce(first_busy, i);
      CONTINUE;
    ELSIF held THEN  -- waiting while holding a team lock could wait in a circle
      CONTINUE;
    ELSE  -- the turn after the one in flight is this claim's: wait, not pass over
      PERFORM pg_advisory_xact_lock(team_space, bilevel_claim_team_key(teams[i]));
      held := true;
    END IF;
    SELECT t.taken, t.taken_attempt INTO taken, taken_attempt
    FROM bilevel_claim_take(kind, teams[i], befores[i], limits[i], true, worker_name,
                            now_utc, lease_until_utc) AS t;
    IF taken IS NOT NULL THEN
      outcome := 'taken';
      RETURN;
    END IF;
  END LOOP;
  IF first_busy IS NOT NULL AND NOT held THEN
    PERFORM pg_advisory_xact_lock(team_space, bilevel_claim_team_key(teams[first_busy]));
    SELECT t.taken, t.taken_attempt INTO taken, taken_attempt
    FROM bilevel_claim_take(kind, teams[first_busy], befores[first_busy], limits[first_busy],
                            false, worker_name, now_utc, lease_until_utc) AS t;
    outcome := CASE WHEN taken IS NULL THEN 'full' ELSE 'taken' END;
    RETURN;
  END IF;
  outcome := CASE WHEN coalesce(cardinality(teams), 0) = 0 THEN 'full' ELSE 'again' END;
END
$$
"""

# The claim: the hint's requested cancel, the kind's lock shared (a preemption pass takes
# it alone), then up to `rounds` snapshots (one row per team with queued work) and rounds.
# waiting: no job taken but jobs are queued (true) or nothing of `kind` is queued (false).
_CLAIM = """
CREATE OR REPLACE FUNCTION bilevel_claim(
  kind text, worker_name text, now_utc timestamp, lease_until_utc timestamp, hint uuid,
  default_weight float8, default_limit integer, gpu boolean, kind_lock bigint,
  team_space integer, heads integer, turns integer, rounds integer,
  OUT job_id uuid, OUT attempt integer, OUT waiting boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  hint_attempt integer;
  snap record;
  turn record;
  got record;
  held boolean := false;
BEGIN
  IF hint IS NOT NULL THEN
    UPDATE jobs SET status = 'cancelled', finished_at = now_utc, updated_at = now_utc
    WHERE jobs.id = hint AND jobs.status = 'queued' AND jobs.cancel_requested
    RETURNING jobs.attempts INTO hint_attempt;
    IF FOUND THEN
      INSERT INTO job_events (job_id, at, from_status, to_status, attempt, detail)
      VALUES (hint, now_utc, 'queued', 'cancelled', hint_attempt, NULL);
    END IF;
  END IF;
  PERFORM pg_advisory_xact_lock_shared(kind_lock);
  FOR round_no IN 1 .. rounds LOOP
    SELECT * INTO snap FROM bilevel_claim_snapshot(kind, default_weight, default_limit, gpu, heads);
    IF snap.ids IS NULL THEN
      waiting := false;
      RETURN;
    END IF;
    SELECT array_agg(u.team) AS teams, array_agg(u.before) AS befores,
           array_agg(u.team_limit) AS limits
    INTO turn
    FROM bilevel_claim_turns(snap.ids, snap.weights, snap.running, snap.queued, snap.limits,
                             heads, turns) AS u;
    SELECT * INTO got FROM bilevel_claim_round(kind, worker_name, now_utc, lease_until_utc,
                                               team_space, turn.teams, turn.befores,
                                               turn.limits, held);
    held := got.held;
    IF got.outcome = 'taken' THEN
      job_id := got.taken;
      attempt := got.taken_attempt;
      waiting := false;
      RETURN;
    ELSIF got.outcome = 'full' THEN
      waiting := true;
      RETURN;
    END IF;
  END LOOP;
  waiting := true;
END
$$
"""

_FUNCTIONS = (
    "bilevel_claim(text, text, timestamp, timestamp, uuid, float8, integer, boolean, bigint,"
    " integer, integer, integer, integer)",
    "bilevel_claim_round(text, text, timestamp, timestamp, integer, uuid[], integer[], integer[],"
    " boolean)",
    "bilevel_claim_take(text, uuid, integer, integer, boolean, text, timestamp, timestamp)",
    "bilevel_claim_turns(uuid[], float8[], integer[], integer[], integer[], integer, integer)",
    "bilevel_claim_snapshot(text, float8, integer, boolean, integer)",
    "bilevel_claim_team_key(uuid)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for ddl in (_TEAM_KEY, _TURNS, _SNAPSHOT, _TAKE, _ROUND, _CLAIM):
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
