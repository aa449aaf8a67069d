"""Warm start against real PostgreSQL: a search's sampler sees earlier members first.

Earlier members' parameters and objectives are read once, when the study is created, into
the study's row; each later ask must equal Optuna asked directly with those trials told
first, and a restart mid-study must ask exactly what an uninterrupted one asks.
"""

from __future__ import annotations

import math
import uuid

import optuna
import pytest

from jobs.specs.admission import admit
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory
from jobs.store.models import Job
from jobs.studies.grid import Expansion
from jobs.studies.search.advance import advance
from jobs.studies.search.sampling import distributions, make_sampler
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.warm import fits, snapshot, spec_value, warm_trials
from tests.factories import team_with_key, tiny_spec

SPACE = {
    "outer.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "hypergradient.K": {"type": "categorical", "choices": [1, 2, 5]},
    "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
}
# the follow-up's space is narrower in lr: earlier members above 0.1 do not fit it
NARROW = {**SPACE, "outer.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}


def _loss(spec) -> float:
    """Smallest at lr = 0.05, K = 5, 15 steps."""
    return (math.log(spec["outer"]["lr"] / 0.05) ** 2 + 1 / spec["hypergradient"]["K"]
            + (15 - spec["inner"]["steps"]) / 10)  # fmt: skip


def _create(sessions, team_id, search, warm=None) -> uuid.UUID:
    with sessions.begin() as s:
        study, _, _ = repo.create_study(
            s, team_id, name="tune", base=tiny_spec(iterations=5, steps=10), grid={},
            group_by=[], expansion=Expansion(members=[]), search=search, warm_start=warm,
        )  # fmt: skip
        return study.id


def _finish(sessions, job_id, status=JobStatus.SUCCEEDED) -> dict:
    with sessions.begin() as s:
        job = repo.get_job(s, None, job_id)
        spec = job.spec
        claim = repo.claim_job(s, job_id, "w:1", 60)
        summary = {"final_outer_loss": _loss(spec), "run_s": 1.0}
        assert repo.finish_job(s, claim, status, summary=summary, iteration=5)
    return spec


def _run(sessions_of, team_id, search, n, warm=None, restart_at=None, fail=()) -> list[dict]:
    """Ask and finish ``n`` trials one at a time; at ``restart_at`` the engine is replaced."""
    sessions, engine = sessions_of()
    study_id = _create(sessions, team_id, search, warm)
    seen = []
    for i in range(n):
        if i == restart_at:
            engine.dispose()
            sessions, engine = sessions_of()
        with sessions.begin() as s:
            (job,) = advance(s, study_id, admit=admit)
            job_id = job.id
        status = JobStatus.FAILED if i in fail else JobStatus.SUCCEEDED
        spec = _finish(sessions, job_id, status)
        seen.append({"outer.lr": spec["outer"]["lr"], "hypergradient.K":
                     spec["hypergradient"]["K"], "inner.steps": spec["inner"]["steps"],
                     "loss": _loss(spec), "ok": status == JobStatus.SUCCEEDED})  # fmt: skip
    engine.dispose()
    return seen


@pytest.mark.integration
def test_a_warm_started_search_asks_what_optuna_asks_told_the_earlier_trials_first(pg_url):
    def sessions_of():
        engine = make_engine(pg_url)
        return make_session_factory(engine), engine

    sessions, engine = sessions_of()
    team_id, _ = team_with_key(sessions)
    earlier = {"params": SPACE, "sampler": "random", "n_trials": 8, "max_concurrent": 1,
               "seed": 5}  # fmt: skip
    first = _run(sessions_of, team_id, earlier, 8, fail={2})
    search = {"params": NARROW, "sampler": "tpe", "n_trials": 4, "max_concurrent": 1,
              "seed": 11}  # fmt: skip
    spec = SearchSpec.model_validate(search)
    with sessions() as s:
        (study,) = [x for x in repo.list_studies(s, team_id) if x.search["seed"] == 5]
        jobs = [j for _, j in repo.study_members(s, study.id)]
        warm = snapshot(spec, jobs)
    engine.dispose()
    outside = sum(1 for t in first if t["ok"] and t["outer.lr"] > 0.1)
    assert warm["skipped"] == {"not_succeeded": 1, "no_objective": 0, "outside_space": outside}
    assert len(warm["trials"]) == 8 - 1 - outside >= 5  # past TPE's 5 random startup trials
    straight = _run(sessions_of, team_id, search, 4, warm)
    restarted = _run(sessions_of, team_id, search, 4, warm, restart_at=2)
    assert straight == restarted
    # Optuna, told the earlier trials and then the study's own, asks the same each time
    dists = distributions(spec)
    keys = sorted(NARROW)
    for number, got in enumerate(straight):
        oracle = optuna.create_study(sampler=make_sampler(spec, number))
        told = [(t["params"], t["values"][0]) for t in warm["trials"]]
        told += [({k: p[k] for k in keys}, p["loss"]) for p in straight[:number]]
        for params, value in told:
            oracle.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                       value=value))  # fmt: skip
        asked = oracle.ask(dists).params
        assert {k: asked[k] for k in keys} == {k: got[k] for k in keys}, number
    # and the earlier trials changed what it asked: a cold start draws elsewhere
    cold = _run(sessions_of, team_id, search, 1)
    assert {k: cold[0][k] for k in keys} != {k: straight[0][k] for k in keys}


def _job(status=JobStatus.SUCCEEDED, loss=1.0, **spec_over) -> Job:
    spec = tiny_spec(iterations=5, steps=10)
    for path, value in spec_over.items():
        *head, last = path.split("__")
        node = spec
        for key in head:
            node = node[key]
        node[last] = value
    return Job(id=uuid.uuid4(), status=status, spec=spec,
               summary={"final_outer_loss": loss} if loss is not None else {})  # fmt: skip


def test_the_snapshot_keeps_what_fits_the_space_and_counts_the_rest():
    search = SearchSpec.model_validate({"params": SPACE, "n_trials": 3})
    fine = _job(outer__lr=0.01, hypergradient__K=2, inner__steps=10)
    jobs = [
        fine,
        fine,  # listed twice (a study's member and a job): counted once
        _job(outer__lr=0.9),  # above the range
        _job(inner__steps=7),  # off the int param's step of 5
        _job(hypergradient__K=3, inner__steps=10),  # not one of the choices
        _job(status=JobStatus.PRUNED),
        _job(loss=None),
        _job(loss=math.nan),
    ]
    got = snapshot(search, jobs)
    assert got["trials"] == [{"job": str(fine.id), "values": [1.0],
                              "params": {"hypergradient.K": 2, "inner.steps": 10,
                                         "outer.lr": 0.01}}]  # fmt: skip
    assert got["skipped"] == {"not_succeeded": 1, "no_objective": 2, "outside_space": 3}
    (trial,) = warm_trials(got)
    assert trial.state == "complete" and trial.values == [1.0]


def test_a_point_fits_a_param_by_its_kind():
    space = SearchSpec.model_validate({"params": {
        **SPACE, "seed": {"type": "categorical", "choices": [1, "a", True]}}}).params  # fmt: skip
    assert fits(space["inner.steps"], 15) and fits(space["inner.steps"], 15.0)
    assert not fits(space["inner.steps"], 20) and not fits(space["inner.steps"], True)
    assert fits(space["outer.lr"], 0.5) and not fits(space["outer.lr"], math.inf)
    assert fits(space["seed"], True) and fits(space["seed"], 1) and not fits(space["seed"], 1.0)
    assert spec_value({"a": {"b": None}}, "a.b") is None
    assert not fits(space["outer.lr"], spec_value({"a": 1}, "outer.lr"))
