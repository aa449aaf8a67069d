"""``bilevel traces compact`` on the embedded store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import update

from cli.main import main
from jobs import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory, sqlite_url
from jobs.store.models import Job
from tests.factories import team_with_key, tiny_spec


def test_compact_now_takes_the_old_jobs_and_needs_a_retention(state, capsys, monkeypatch):
    assert main(["migrate", "--state-dir", str(state)]) == 0
    engine = make_engine(sqlite_url(state))
    sessions = make_session_factory(engine)
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
        repo.write_trace(s, job.id, [{"iteration": i, "outer_loss": 1.0} for i in range(1, 11)])
        old = datetime(2000, 1, 1, tzinfo=UTC)
        s.execute(update(Job).where(Job.id == job.id)
                  .values(status=JobStatus.FAILED, finished_at=old))  # fmt: skip
    capsys.readouterr()
    monkeypatch.delenv("BILEVEL_TRACE_RETENTION_DAYS", raising=False)
    assert main(["traces", "compact", "--state-dir", str(state)]) == 2
    assert "BILEVEL_TRACE_RETENTION_DAYS" in capsys.readouterr().err
    assert main(["traces", "compact", "--older-than-days", "-1"]) == 2
    assert "--older-than-days must be >= 0, got -1" in capsys.readouterr().err
    monkeypatch.setenv("BILEVEL_TRACE_RETENTION_DAYS", "30")
    assert main(["traces", "compact", "--state-dir", str(state)]) == 0
    out = capsys.readouterr()
    done = json.loads(out.out)
    assert (done["jobs"], done["points"], done["done"]) == (1, 10, True)
    assert "compacted the traces of 1 job(s)" in out.err
    with sessions() as s:
        assert repo.trace_span_of(s, job.id, 0) == (10, 1, 10, True)
    engine.dispose()
