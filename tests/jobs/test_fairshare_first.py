"""``pick_order(..., first=k)``: the claim's next turns are the full order's first ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from jobs.fairshare import Candidate, TeamLoad, pick_order

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _instance(rng: random.Random) -> tuple[dict[str, TeamLoad], list[Candidate[int]]]:
    teams = {
        f"t{i}": TeamLoad(rng.choice([0.5, 1.0, 2.0, 3.0]), rng.randint(0, 4), rng.randint(1, 6))
        for i in range(rng.randint(1, 12))
    }
    queued = [
        Candidate(k, rng.choice(list(teams)), rng.randint(0, 2), T0 + timedelta(seconds=k))
        for k in range(rng.randint(0, 40))
    ]
    return teams, queued


def _below_limits(teams: dict[str, TeamLoad], order: list[Candidate[int]]) -> list[int]:
    """The picks of ``order`` that free workers could take now (each team below its limit)."""
    taken: dict[str, int] = {}
    out = []
    for c in order:
        n = taken.get(c.team, 0)
        taken[c.team] = n + 1
        if teams[c.team].running + n < teams[c.team].limit:
            out.append(c.id)
    return out


def test_the_first_k_picks_are_the_full_orders_first_k_below_the_limits():
    rng = random.Random(7)
    for _ in range(500):
        teams, queued = _instance(rng)
        full = _below_limits(teams, pick_order(teams, queued))
        for k in (1, 2, 3, 5, 8, 50):
            assert [c.id for c in pick_order(teams, queued, first=k)] == full[:k]
