"""Every response says how long the app took (``Server-Timing: app;dur=<ms>``), errors too."""

from __future__ import annotations

import time

import pytest

from api.servertiming import app_duration_ms
from tests.factories import bearer, team_with_key


def test_every_response_carries_the_apps_own_time(client, pg_sessions):
    _, key = team_with_key(pg_sessions)
    t0 = time.perf_counter()
    ok = client.get("/v1/jobs", headers=bearer(key))
    outside_ms = (time.perf_counter() - t0) * 1e3
    missing = client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=bearer(key))
    unauthorised = client.get("/v1/jobs")
    for r, status in ((ok, 200), (missing, 404), (unauthorised, 401)):
        assert r.status_code == status
        dur = app_duration_ms(r.headers["server-timing"])
        assert dur is not None and dur >= 0
    # the app's time is part of what the client waited
    assert app_duration_ms(ok.headers["server-timing"]) <= outside_ms


@pytest.mark.parametrize(
    ("header", "expected"),
    [("app;dur=12.5", 12.5), ("db;dur=3, app;desc=\"x\";dur=4.25", 4.25),
     ("db;dur=3", None), (None, None), ("app;dur=abc", None), ("app", None)],
)  # fmt: skip
def test_the_app_metric_is_read_among_others(header, expected):
    assert app_duration_ms(header) == expected
