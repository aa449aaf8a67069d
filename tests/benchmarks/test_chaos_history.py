"""The chaos soak's history checks: each finds the impossible history it is for, and passes
the possible ones that look alike (concurrent requests answered in either order, a resumed
job rewriting points with the same values, a capped team's surplus going to the other)."""

from __future__ import annotations

import math

import pytest

from benchmarks.service._chaos_history import (
    Claim,
    History,
    Seen,
    attempts_grow,
    claims_exclusive,
    fair_shares,
    jain,
    terminal_final,
    trace_values,
)


def test_a_job_seen_ended_then_running_again_is_a_violation():
    seen = [Seen(0.0, 1.0, "a", "running", 1), Seen(1.0, 2.0, "a", "succeeded", 1),
            Seen(3.0, 3.5, "a", "running", 1)]  # fmt: skip
    n, bad = terminal_final(seen)
    assert n == 3 and len(bad) == 1 and "succeeded at 2.00 s, then running" in bad[0]


def test_an_answer_to_a_request_sent_before_the_end_was_seen_may_be_older():
    # the second request was in flight when the first was answered: either order is possible
    seen = [Seen(0.0, 2.0, "a", "succeeded", 1), Seen(1.5, 2.5, "a", "running", 1),
            Seen(3.0, 3.1, "a", "succeeded", 1), Seen(0.0, 1.0, "b", "queued", 0)]  # fmt: skip
    assert terminal_final(seen) == (4, [])


def test_attempts_that_go_down_between_ordered_answers_are_a_violation():
    seen = [Seen(0.0, 1.0, "a", "running", 2), Seen(0.5, 1.5, "a", "running", 1),
            Seen(2.0, 2.1, "a", "queued", 1)]  # fmt: skip
    n, bad = attempts_grow(seen)
    assert n == 3 and bad == [
        "job a: attempt 2 seen at 1.00 s, then attempt 1 in a request sent at 2.00 s"
    ]
    # without the last answer, the overlapping pair is not ordered: no violation
    assert attempts_grow(seen[:2]) == (2, [])


def test_a_trace_point_read_with_two_values_or_not_the_stored_one_is_a_violation():
    h = History()
    h.trace("a", [1, 2], [0.5, math.nan])
    h.trace("a", [1, 2], [0.5, None])  # a resumed job's rewrite with the same value; NaN is null
    assert trace_values(h.values, {("a", 1): 0.5, ("a", 2): None}) == (2, [])
    h.trace("a", [1], [0.25])
    n, bad = trace_values(h.values, {("a", 1): 0.5, ("a", 2): None})
    assert n == 2 and bad == ["job a iteration 1: read [0.25, 0.5], stored 0.5"]
    _, bad = trace_values({("b", 3): {1.0}}, {})
    assert bad == ["job b iteration 3: read [1.0], stored missing"]


def _events(*rows: tuple[str | None, str, int, str | None]) -> list[Claim]:
    return [Claim(i, "a", float(i), old, new, att, w) for i, (old, new, att, w) in enumerate(rows)]


def test_a_claim_history_of_requeues_and_resumes_is_exclusive():
    ok = _events((None, "queued", 0, None), ("queued", "running", 1, "w1"),
                 ("running", "queued", 1, None), ("queued", "running", 2, "w2"),
                 ("running", "succeeded", 2, None))  # fmt: skip
    assert claims_exclusive(ok) == (2, [])


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        # a second worker claims the job while the first still holds it
        ([(None, "queued", 0, None), ("queued", "running", 1, "w1"),
          ("queued", "running", 2, "w2")], "the job was running"),
        # one attempt claimed twice
        ([(None, "queued", 0, None), ("queued", "running", 1, "w1"),
          ("running", "queued", 1, None), ("queued", "running", 1, "w2")],
         "attempt 1 after attempt 1"),
        # a job that left its terminal state
        ([(None, "queued", 0, None), ("queued", "cancelled", 0, None),
          ("cancelled", "queued", 0, None)], "after the terminal cancelled"),
        ([(None, "queued", 0, None), ("queued", "running", 1, None)], "naming no worker"),
    ],
)  # fmt: skip
def test_impossible_claim_histories_are_violations(rows, says):
    _, bad = claims_exclusive(_events(*rows))
    assert any(says in b for b in bad), bad


def test_jain_index_bounds():
    assert jain([1.0, 1.0, 1.0]) == 1.0
    assert jain([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain([]) == 1.0


def test_fair_shares_deal_whole_jobs_by_weight_and_cap_a_team_at_its_limit():
    weights, limits = {"alpha": 3.0, "beta": 1.0}, {"alpha": 3, "beta": 2}
    # weights 3:1 in whole jobs: 2 running are one each, 4 are three and one
    two = [(float(t), {"alpha": (1, 2), "beta": (1, 5)}) for t in range(30)]
    four = [(float(t), {"alpha": (3, 2), "beta": (1, 5)}) for t in range(30)]
    for samples in (two, four):
        n, bad, fig = fair_shares(samples, weights, limits, bound=0.01)
        assert (n, bad, fig["jain"]) == (30, [], 1.0)
    assert fair_shares(two + four, weights, limits, bound=0.1)[2]["mean_fair_share"] == {
        "alpha": 2.0,
        "beta": 1.0,
    }
    # 5 running: uncapped, alpha's fifth job by the larger weight on a tie; capped at 3,
    # beta takes it, and then a 4:1 split is unfair
    skew = [(float(t), {"alpha": (4, 2), "beta": (1, 5)}) for t in range(30)]
    n, bad, fig = fair_shares(skew, weights, {"alpha": 4, "beta": 2}, bound=0.01)
    assert (fig["mean_fair_share"], bad) == ({"alpha": 4.0, "beta": 1.0}, [])
    n, bad, fig = fair_shares(skew, weights, limits, bound=0.1)
    assert fig["mean_fair_share"] == {"alpha": 3.0, "beta": 2.0} and len(bad) == 1
    assert fig["jain"] == round((4 / 3 + 1 / 2) ** 2 / (2 * ((4 / 3) ** 2 + 1 / 4)), 4)


def test_fair_shares_count_only_backlogged_samples_and_check_only_enough_of_them():
    weights, limits = {"alpha": 1.0, "beta": 1.0}, {"alpha": 3, "beta": 3}
    idle_beta = [(float(t), {"alpha": (3, 4), "beta": (0, 0)}) for t in range(50)]
    assert fair_shares(idle_beta, weights, limits, bound=0.1)[:2] == (0, [])
    few = [(float(t), {"alpha": (3, 4), "beta": (0, 1)}) for t in range(5)]
    n, bad, fig = fair_shares(few, weights, limits, bound=0.1)
    assert (n, bad, fig["backlogged_samples"]) == (0, [], 5)
