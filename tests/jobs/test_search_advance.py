"""A search's steps against real PostgreSQL: the sampler's history is the store's.

The objective is a closed form of the suggested parameters, so the same seed and the same
observed values must give the same suggestions, whether or not the process that asks is
replaced in the middle, and equal to asking the sampler directly with the same trials.
"""

from __future__ import annotations

import math
import threading
import uuid

import pytest

from jobs.specs.admission import admit
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory
from jobs.studies.grid import Expansion
from jobs.studies.search.advance import advance
from jobs.studies.search.sampling import suggest
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import Trial
from tests.factories import team_with_key, tiny_spec

pytestmark = pytest.mark.integration

SPACE = {
    "outer.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "hypergradient.K": {"type": "categorical", "choices": [1, 2, 5]},
    "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
}


def _loss(params) -> float:
    """A smooth objective with its minimum at lr = 0.05, K = 5, 15 steps."""
    return (
        (math.log(params["outer.lr"] / 0.05)) ** 2
        + 1 / params.get("hypergradient.K", 3)
        + (15 - params["inner.steps"]) / 10
    )


def _create(sessions, search: dict) -> uuid.UUID:
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        study, _, _ = repo.create_study(
            s, team_id, name="tune", base=tiny_spec(iterations=5, steps=10), grid={},
            group_by=[], expansion=Expansion(members=[]), search=search,
        )  # fmt: skip
        return study.id


def _step(sessions, study_id) -> list[uuid.UUID]:
    with sessions.begin() as s:
        return [j.id for j in advance(s, study_id, admit=admit)]


def _finish(sessions, job_id, status=JobStatus.SUCCEEDED, loss=None) -> dict:
    with sessions() as s:
        job = repo.get_job(s, None, job_id)
        params = {
            "outer.lr": job.spec["outer"]["lr"],
            "hypergradient.K": job.spec["hypergradient"]["K"],
            "inner.steps": job.spec["inner"]["steps"],
        }
    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "w:1", 60)
        summary = {"final_outer_loss": _loss(params) if loss is None else loss, "run_s": 1.0}
        assert repo.finish_job(s, claim, status, summary=summary, iteration=5)
    return params


def _run(sessions_of, search: dict, n: int, restart_at: int | None) -> list[dict]:
    """Ask and finish ``n`` trials one at a time; at ``restart_at`` the engine is replaced."""
    sessions, engine = sessions_of()
    study_id = _create(sessions, search)
    seen = []
    for i in range(n):
        if i == restart_at:  # a new process: nothing of the old one's memory is left
            engine.dispose()
            sessions, engine = sessions_of()
        (job_id,) = _step(sessions, study_id)
        params = _finish(sessions, job_id)
        seen.append({k: params[k] for k in sorted(search["params"])})
    engine.dispose()
    return seen


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "qmc", "random"])
def test_a_restart_mid_study_asks_exactly_what_an_uninterrupted_run_asks(pg_url, sampler):
    def sessions_of():
        engine = make_engine(pg_url)
        return make_session_factory(engine), engine

    space = SPACE if sampler != "cmaes" else {k: SPACE[k] for k in ("outer.lr", "inner.steps")}
    search = {"params": space, "sampler": sampler, "n_trials": 9, "max_concurrent": 1,
              "seed": 11}  # fmt: skip
    straight = _run(sessions_of, search, 9, None)
    restarted = _run(sessions_of, search, 9, restart_at=6)
    assert straight == restarted
    # and the sampler asked directly, with the same trials, agrees: nothing was lost in
    # the store's round trip (parameters, values, the sampler's own attributes)
    spec = SearchSpec.model_validate(search)
    trials: list[Trial] = []
    for number, params in enumerate(straight):
        sug = suggest(spec, trials, number)
        assert sug.params == params, number
        trials.append(Trial(number, params, "complete", [_loss(params)],
                            sampler_attrs=sug.sampler_attrs))  # fmt: skip
    assert len({str(p) for p in straight}) == len(straight)  # the sampler moved


def test_two_members_ending_at_once_add_each_next_trial_once(pg_sessions):
    search = {"params": SPACE, "sampler": "tpe", "n_trials": 8, "max_concurrent": 2}
    study_id = _create(pg_sessions, search)
    first = _step(pg_sessions, study_id)
    assert len(first) == 2
    for job_id in first:
        _finish(pg_sessions, job_id)
    barrier = threading.Barrier(4)
    added: list[list[uuid.UUID]] = []

    def step():
        barrier.wait()
        added.append(_step(pg_sessions, study_id))

    threads = [threading.Thread(target=step) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(a) for a in added) == [0, 0, 0, 2]
    with pg_sessions() as s:
        rows = repo.study_members(s, study_id)
    assert [m.position for m, _ in rows] == [0, 1, 2, 3]
    assert [m.trial_state for m, _ in rows] == ["complete", "complete", "running", "running"]


def test_the_search_ends_when_its_budget_is_spent_and_its_members_have_ended(pg_sessions):
    # 5 hyper-iterations a member: a budget of 12 is spent by the third member
    search = {"params": SPACE, "sampler": "random", "budget": {"iterations": 12},
              "max_concurrent": 1, "seed": 3}  # fmt: skip
    study_id = _create(pg_sessions, search)
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUCCEEDED]
    for status in statuses:
        (job_id,) = _step(pg_sessions, study_id)
        _finish(pg_sessions, job_id, status)
    assert _step(pg_sessions, study_id) == []
    with pg_sessions() as s:
        study = repo.get_study_any(s, study_id)
        rows = repo.study_members(s, study_id)
        assert study.search_done
    assert [m.trial_state for m, _ in rows] == ["complete", "fail", "complete"]
    assert rows[1][0].objectives is None and rows[0][0].objectives == [
        rows[0][1].summary["final_outer_loss"]
    ]
