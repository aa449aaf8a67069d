"""Factories for service tests: teams with keys, and small job specs."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from jobs.store import repo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(kind: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{kind}.json").read_text())


def tiny_spec(iterations: int = 20, steps: int = 10, **over: Any) -> dict[str, Any]:
    """A toy job that runs in well under a second per dozen iterations."""
    spec = copy.deepcopy(example("toy"))
    spec["inner"]["steps"] = steps
    spec["hypergradient"] = {"method": "truncated", "K": min(3, steps)}
    spec["outer"]["iterations"] = iterations
    spec["diagnostics"]["every"] = 5
    spec.update(over)
    return spec


def small_one_shot(iterations: int = 4, **problem: Any) -> dict[str, Any]:
    """A one-shot job of seconds on a CPU: 3-way, 4 kernels, 3 inner steps, 1-RMD."""
    spec = copy.deepcopy(example("one_shot"))
    spec["problem"].update(ways=3, queries=2, meta_batch=2, width=4, eval_tasks=6, **problem)
    spec["inner"]["steps"] = 3
    spec["hypergradient"] = {"method": "truncated", "K": 1}
    spec["outer"].update(iterations=iterations, lr=0.01)
    spec["device"] = "cpu"
    return spec


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header of an API key."""
    return {"Authorization": f"Bearer {key}"}


def team_with_key(
    sessions, name: str | None = None, *, scope: str = "team"
) -> tuple[uuid.UUID, str]:
    """A new team (or the one called ``name``) and one API key for it: ``(team id, key)``.

    The key is hashed under the test run's ``BILEVEL_KEY_SECRET`` (see tests/conftest.py).
    """
    from tests.conftest import KEY_SECRET

    with sessions.begin() as s:
        team = repo.ensure_team(s, name or f"team-{uuid.uuid4().hex[:8]}")
        actor = repo.Actor.operator(team.id)
        _, key = repo.create_api_key(s, team, secret=KEY_SECRET.encode(), scope=scope, actor=actor)
        return team.id, key


def key_operator(session, prefix: str) -> repo.Actor:
    """The store's operator acting on the key with ``prefix`` (as ``bilevel keys revoke``)."""
    row = repo.get_api_key(session, prefix)
    assert row is not None, f"no key {prefix}"
    return repo.Actor.operator(row.team_id)


def queued_job(sessions, spec: dict[str, Any]) -> uuid.UUID:
    """A new team's job of ``spec``, queued in the store (nothing dispatched)."""
    from jobs.specs.job import parse_spec

    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(spec))
    return job.id


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, poll: float = 0.05):
    """``pred()`` once truthy (returned), else ``AssertionError`` naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def wait_ready(url: str, proc, timeout_s: float) -> bool:
    """Poll ``url``/readyz until it answers 200; False if ``proc`` died or time ran out."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def table_names(url: str) -> set[str]:
    """The tables of the database at ``url``, read on a connection of their own."""
    from sqlalchemy import create_engine, inspect

    from jobs.store.db import normalize_url

    engine = create_engine(normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
