"""Divergence warnings: the watch's rule, and a job chosen to diverge, with and without a stop."""

from __future__ import annotations

import copy
import math

import pytest

from jobs.store import repo
from jobs.store.models import Job
from tests.factories import example, queued_job, tiny_spec
from worker.divergence import FACTOR, DivergenceWatch
from worker.runner import execute_job
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, lease_s=30)


def _feed(watch: DivergenceWatch, losses, norms=None) -> list[list[dict]]:
    norms = norms or [1.0] * len(losses)
    return [
        watch.observe({"iteration": i, "outer_loss": loss, "grad_norm": g})
        for i, (loss, g) in enumerate(zip(losses, norms), start=1)
    ]


def test_a_value_just_past_factor_times_its_reference_is_flagged_and_one_at_it_is_not():
    # reference = max(first, median of the latest) = 2.0
    at, past = FACTOR * 2.0, FACTOR * 2.0 * (1 + 1e-9)
    assert _feed(DivergenceWatch(), [2.0, 2.0, 2.0, at]) == [[], [], [], []]
    flagged = _feed(DivergenceWatch(), [2.0, 2.0, 2.0, past])[-1]
    assert [(w["kind"], w["iteration"], w["value"], w["reference"]) for w in flagged] == [
        ("outer_loss", 4, past, 2.0)
    ]
    assert flagged[0]["message"].startswith(f"outer loss jumped to {past:.3g} at iteration 4, ")


def test_a_loss_that_falls_to_near_zero_and_rises_a_little_is_not_flagged():
    # the first value anchors the reference: 1e-6 -> 1e-3 is no blow-up of a run from 10
    assert not any(_feed(DivergenceWatch(), [10.0, 1.0, 1e-3, 1e-6, 1e-6, 1e-3, 5.0]))


def test_a_zero_reference_flags_nothing_finite_but_a_non_finite_value_still():
    # a hypergradient exactly 0 at first (a single-loop method's first step) has no scale
    out = _feed(DivergenceWatch(), [1.0, 1.0, 1.0], norms=[0.0, 5.0, math.nan])
    assert [[w["kind"] for w in o] for o in out] == [[], [], ["hypergradient"]]


def test_a_run_that_stays_diverged_is_counted_with_its_largest_value():
    watch = DivergenceWatch()
    out = _feed(watch, [1.0, 1.0, 1e4, 1e6, 1e5, 1.0], norms=[1.0, 1.0, 1.0, 1.0, math.inf, 1.0])
    assert [len(o) for o in out] == [0, 0, 1, 0, 1, 0]  # only each kind's first is new
    loss, grad = watch.warnings
    assert (loss["iteration"], loss["count"], loss["max"], loss["max_iteration"]) == (3, 3, 1e6, 4)
    assert (grad["kind"], grad["value"], grad["message"]) == (
        "hypergradient",
        "inf",
        "hypergradient norm is inf at iteration 5",
    )


def test_a_resumed_watch_continues_the_earlier_warnings():
    first = DivergenceWatch()
    _feed(first, [1.0, 1e3])
    again = DivergenceWatch(warnings=first.warnings)
    again.observe({"iteration": 3, "outer_loss": 1.0, "grad_norm": 1.0})
    assert again.observe({"iteration": 4, "outer_loss": 1e3, "grad_norm": 1.0}) == []
    assert again.warnings[0]["count"] == 2 and again.warnings[0]["iteration"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [((1.0, 10), "factor must be > 1, got 1.0"), ((10.0, 0), "window must be >= 1, got 0")],
)
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        DivergenceWatch(*args)


def _diverging_spec(**outer) -> dict:
    """The toy problem whose learned inner step size is pushed past stability at iteration 2.

    Its outer loss goes 23 -> 3.2e9 (hypergradient norm 9 -> 4e10) and comes back: finite
    throughout, so ``core.fit`` goes on.
    """
    spec = copy.deepcopy(example("toy"))
    spec["inner"].update(steps=10, lr=0.5, learn_lr=True)
    spec["hypergradient"] = {"method": "truncated", "K": 5}
    spec["outer"].update(lr=2.0, iterations=8, **outer)
    spec["diagnostics"]["every"] = 0
    return spec


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def test_a_job_chosen_to_diverge_succeeds_with_its_warnings(sessions):
    job_id = queued_job(sessions, _diverging_spec())
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    job = _job(sessions, job_id)
    with sessions() as s:
        trace = repo.trace_columns(s, job_id)
    kinds = {w["kind"]: w for w in job.summary["warnings"]}
    assert set(kinds) == {"outer_loss", "hypergradient"}
    loss = kinds["outer_loss"]
    i = loss["iteration"]
    assert loss["value"] == trace["outer_loss"][i - 1] > FACTOR * trace["outer_loss"][0]
    assert kinds["hypergradient"]["value"] == trace["grad_norm"][i - 1]


def test_with_stop_on_divergence_it_fails_diverged_at_the_iteration_flagged(sessions):
    job_id = queued_job(sessions, _diverging_spec(stop_on_divergence=True))
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    job = _job(sessions, job_id)
    with sessions() as s:
        trace = repo.trace_columns(s, job_id)
    at = job.error["iteration"]
    assert job.error["type"] == "Diverged" and job.error["detail"].startswith("Diverged: ")
    assert trace["iteration"] == list(range(1, at + 1))  # kept up to the flagged one
    assert [w["iteration"] for w in job.summary["warnings"]] == [at, at]
    assert "traceback" not in job.error and job.attempts == 1


def test_a_calm_job_has_no_warnings(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=10))
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    assert _job(sessions, job_id).summary["warnings"] == []
