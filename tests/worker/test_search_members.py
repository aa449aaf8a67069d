"""A search member's early ends in the runner: pruned by its study, or stalled (converged).

The other member the pruner compares with is data in the store (a finished member whose
stored outer loss is far below anything the toy problem reaches), so the median pruner must
stop the running one at a hyper-iteration boundary, with its trace kept up to there.
"""

from __future__ import annotations

import pytest

from jobs.specs.admission import admit
from jobs.specs.job import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.studies.grid import Expansion
from jobs.studies.search.advance import advance
from tests.factories import queued_job, team_with_key, tiny_spec
from worker.pruning import Stall
from worker.runner import execute_job
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=50, lease_s=30)
FLOOR = -1e6  # below any outer loss of the toy problem (a squared distance)


def _search_with_a_finished_member(sessions):
    team_id, _ = team_with_key(sessions)
    search = {"params": {"outer.lr": {"type": "float", "low": 0.01, "high": 0.2}},
              "sampler": "random", "n_trials": 3, "max_concurrent": 1,
              "pruner": {"kind": "median", "startup_trials": 1}}  # fmt: skip
    with sessions.begin() as s:
        study, _, _ = repo.create_study(
            s, team_id, name="tune", base=tiny_spec(iterations=300), grid={}, group_by=[],
            expansion=Expansion(members=[]), search=search,
        )  # fmt: skip
        first = repo.add_trial(s, study, 0, parse_spec(tiny_spec(iterations=300)),
                               {"outer.lr": 0.1}, {})  # fmt: skip
        records = [{"iteration": i, "outer_loss": FLOOR} for i in range(1, 301)]
        repo.write_trace(s, first.id, records)
        claim = repo.claim_job(s, first.id, "w:1", 60)
        assert repo.finish_job(s, claim, JobStatus.SUCCEEDED, iteration=300,
                               summary={"final_outer_loss": FLOOR})  # fmt: skip
        second = repo.add_trial(s, study, 1, parse_spec(tiny_spec(iterations=300)),
                                {"outer.lr": 0.05}, {})  # fmt: skip
        return study.id, second.id


def test_a_member_behind_the_median_ends_pruned_with_its_trace(sessions):
    study_id, job_id = _search_with_a_finished_member(sessions)
    assert execute_job(sessions, job_id, SETTINGS) == "pruned"
    with sessions() as s:
        job = repo.get_job(s, None, job_id)
        trace = repo.trace_columns(s, job_id)
    assert job.status == JobStatus.PRUNED and job.finished_at is not None
    at = job.summary["pruned_at"]
    assert 1 <= at < 300 and job.iteration == at
    assert trace["iteration"] == list(range(1, at + 1))  # kept, none missing
    assert all(loss > FLOOR for loss in trace["outer_loss"])
    with sessions.begin() as s:  # the study's next step records the trial as pruned
        advance(s, study_id, admit=admit)
        rows = repo.study_members(s, study_id)
    assert [m.trial_state for m, _ in rows][:2] == ["complete", "pruned"]


def test_stop_when_stalled_ends_a_converged_run_succeeded_early(sessions):
    spec = tiny_spec(iterations=3000)
    spec["outer"]["stop_when_stalled"] = {"window": 10, "tolerance": 1e-3}
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    with sessions() as s:
        job = repo.get_job(s, None, job_id)
        trace = repo.trace_columns(s, job_id)
    at = job.summary["converged_at"]
    assert at < 3000 and trace["iteration"][-1] == at
    # the rule, checked on the stored trace: over the last window the loss stood still
    stall = Stall(10, 1e-3)
    hits = [stall({"outer_loss": loss, "grad_norm": g})
            for loss, g in zip(trace["outer_loss"], trace["grad_norm"])]  # fmt: skip
    assert hits[-1] and not any(hits[:-1])


@pytest.mark.parametrize(
    ("losses", "norms", "stalled"),
    [
        ([1.0] * 5, [0.5] * 5, True),  # both flat
        ([1.0] * 5, [0.5, 0.4, 0.3, 0.2, 0.1], False),  # a plateau the norm is leaving
        ([1.0] * 5, [1.0, 1e-4, 1e-4, 1e-4, 5e-4], True),  # the norm has vanished
        ([1.0, 0.9, 0.8, 0.7, 0.6], [0.5] * 5, False),  # the loss still falls
        ([1.0] * 4, [0.5] * 4, False),  # the window is not full yet
    ],
)
def test_stall_needs_both_the_loss_and_the_norm_still(losses, norms, stalled):
    stall = Stall(5, 1e-3)
    got = [stall({"outer_loss": x, "grad_norm": g}) for x, g in zip(losses, norms)]
    assert got[-1] is stalled
