"""The queue's estimated starts against a simulated pool of jobs with fixed lengths."""

from __future__ import annotations

import heapq
import random

import pytest

from jobs import fairshare
from jobs.queue_estimate import (
    DEFAULT_RUN_S,
    FLUID_AHEAD_PER_WORKER,
    Finished,
    FreeWorkers,
    Shape,
    expected_run_s,
    remaining_s,
)

CLAIM_GAP_S = 0.2  # a free worker takes its next job this long after its last one ends
RATE_S = 0.01  # seconds per inner step and hyper-iteration of the simulated problem


def _length(shape: Shape) -> float:
    return RATE_S * shape.work


def _simulate(running: list[float], queue: list[Shape]) -> list[float]:
    """When each queued job really starts: free after ``running``, taking the queue in order."""
    heap = [r + CLAIM_GAP_S for r in running]
    heapq.heapify(heap)
    starts = []
    for shape in queue:
        start = heapq.heappop(heap)
        starts.append(start)
        heapq.heappush(heap, start + _length(shape) + CLAIM_GAP_S)
    return starts


def _estimate(running, queue, history) -> list[float]:
    """What the pool view computes: remaining time of each running job, queue scheduled."""
    free = [
        remaining_s(expected_s=expected_run_s(shape, history), elapsed_s=elapsed,
                    eta_s=eta, eta_age_s=age)
        for shape, elapsed, eta, age in running
    ]  # fmt: skip
    ids = list(range(len(queue)))
    starts = fairshare.estimated_starts(ids, free, {i: expected_run_s(queue[i], history)
                                                    for i in ids})  # fmt: skip
    return [starts[i] for i in ids]


NINE_S = Shape("toy", steps=100, iterations=9)  # 9 s at RATE_S
SHORT = Shape("toy", steps=10, iterations=10)  # 1 s


def _running(shape: Shape, elapsed: float, flush_age: float):
    """A running job as the store holds it: its ETA as of its last flush, ``flush_age`` ago."""
    eta = _length(shape) - (elapsed - flush_age)
    return (shape, elapsed, eta, flush_age)


@pytest.mark.parametrize(
    ("workers", "history"),
    [
        # the case: 9 s jobs behind one running 5 s ago, after earlier 1 s jobs
        (1, [Finished(SHORT, 1.0)] * 5 + [Finished(NINE_S, 9.0)]),
        # no job of this shape yet: scaled by its inner steps x hyper-iterations
        (1, [Finished(SHORT, 1.0)] * 5),
        (2, [Finished(SHORT, 1.0)] * 5),
    ],
)
def test_positions_1_to_5_start_within_30_percent_of_their_estimates(workers, history):
    running = [_running(NINE_S, 5.0 + 2.0 * w, 0.6) for w in range(workers)]
    queue = [NINE_S] * 6
    truth = _simulate([_length(s) - e for s, e, _, _ in running], queue)
    got = _estimate(running, queue, history)
    for k in range(5):
        assert abs(got[k] - truth[k]) <= 0.3 * truth[k], (k + 1, got[k], truth[k])


def test_the_median_of_other_shapes_alone_would_miss_position_2():
    # the rule this replaces: every queued job as long as the median success (1 s here)
    history = [Finished(SHORT, 1.0)] * 5
    running = [_running(NINE_S, 5.0, 0.6)]
    truth = _simulate([4.0], [NINE_S] * 2)
    naive = fairshare.estimated_starts([0, 1], [4.0 - 0.6], {0: 1.0, 1: 1.0})
    assert abs(naive[1] - truth[1]) > 0.3 * truth[1]
    assert abs(_estimate(running, [NINE_S] * 2, history)[1] - truth[1]) <= 0.3 * truth[1]


def test_expected_run_s_prefers_the_same_shape_then_scales_by_work():
    other = Shape("quadratic", steps=200, iterations=10)
    history = [Finished(NINE_S, 8.0), Finished(NINE_S, 10.0), Finished(NINE_S, 30.0),
               Finished(SHORT, 2.0), Finished(other, 100.0)]  # fmt: skip
    assert expected_run_s(NINE_S, history) == 10.0  # the median of its own
    # toy's median rate: of 8/900, 10/900, 30/900, 2/100 -> (10/900 + 2/100) / 2 per unit
    assert expected_run_s(Shape("toy", 10, 5), history) == pytest.approx(
        (10 / 900 + 2 / 100) / 2 * 50
    )
    # no toy at all: every kind's rate
    assert expected_run_s(Shape("mlp", 1, 1), [Finished(other, 100.0)]) == 100.0 / 2000
    assert expected_run_s(NINE_S, []) == DEFAULT_RUN_S


def test_remaining_is_the_eta_less_its_age_or_the_expected_less_the_elapsed():
    assert remaining_s(expected_s=9.0, elapsed_s=5.0, eta_s=4.5, eta_age_s=0.5) == 4.0
    assert remaining_s(expected_s=9.0, elapsed_s=5.0, eta_s=None, eta_age_s=99.0) == 4.0
    assert remaining_s(expected_s=9.0, elapsed_s=12.0, eta_s=None, eta_age_s=0.0) == 0.0
    assert remaining_s(expected_s=9.0, elapsed_s=5.0, eta_s=1.0, eta_age_s=3.0) == 0.0


def test_a_shape_reads_a_stored_spec_and_counts_missing_fields_as_one():
    spec = {"problem": {"kind": "toy"}, "inner": {"steps": 100}, "outer": {"iterations": 9}}
    assert Shape.of(spec) == NINE_S and NINE_S.work == 900
    assert Shape.of({}) == Shape("", 1, 1)


@pytest.mark.parametrize("seed", range(30))
def test_free_workers_start_a_job_where_list_scheduling_of_equal_jobs_does(seed):
    rng = random.Random(seed)
    free = [rng.choice([0.0, rng.uniform(0, 50)]) for _ in range(rng.randint(1, 12))]
    d = rng.uniform(0.5, 30)
    n = 400
    exact = fairshare.estimated_starts(list(range(n)), free, dict.fromkeys(range(n), d))
    workers = FreeWorkers(free)
    for k in range(n):
        got = workers.start_s(k, k * d)
        busy = sum(f <= exact[k] for f in free)  # at most the workers it counts busy
        if k <= FLUID_AHEAD_PER_WORKER * busy:  # near the head: the schedule's own time
            assert got == pytest.approx(exact[k], abs=1e-6), (k, got, exact[k])
        else:  # far down: within half a job of it
            assert abs(got - exact[k]) <= d / 2 + 1e-6, (k, got, exact[k])


def test_free_workers_without_a_worker_give_no_estimate_and_nothing_ahead_starts_when_one_is_free():
    assert FreeWorkers([]).start_s(3, 10.0) is None
    assert FreeWorkers([7.0, 3.0, -1.0]).start_s(0, 0.0) == 0.0  # a late ETA counts as free now
    # the 2 s job ahead runs from 3 to 5 on one worker; the other is free at 7
    assert FreeWorkers([7.0, 3.0]).start_s(1, 2.0) == 5.0
