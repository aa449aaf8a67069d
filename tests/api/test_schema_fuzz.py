"""Schemathesis against the OpenAPI schema: every operation with every check, then the
stateful phase that follows the schema's links (a submitted job's id to its routes; a
study's, data set's and webhook's to theirs, each of which must answer its success).
About half the positive bodies of the creating routes are valid ones
(``benchmarks/service/fuzz_bodies.py``), so the creates succeed and the links have ids.

The app runs on the session's migrated PostgreSQL with a dispatcher that only records sends,
authenticated with a real admin API key. Generation is derandomized (the same inputs on every
run) and bounded; the inputs tried, by operation and status, are printed and written to
``out/schemathesis.json``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import sessionmaker

from api import create_app
from benchmarks.service import fuzz_bodies
from benchmarks.service.fuzz import fuzz_config, fuzz_settings
from jobs.store.db import make_engine
from tests.api.conftest import RecordingDispatcher
from tests.factories import team_with_key
from tests.webhook_receiver import Receiver

OUT = Path(__file__).resolve().parents[2] / "out" / "schemathesis.json"
MAX_EXAMPLES = 40  # per operation, besides the deterministic coverage and example cases
# 100: at 30 the run reached no 201 from POST /v1/jobs when the whole suite is collected
# (the base commit too); most generated specs are rightly refused (cross-field checks).
# 150: with the example plugin's kind in the spec's union the derandomized walk at 100 and
# 120 cancelled no job it had created (at 150: 13 created, 4 cancelled). 75: with the valid
# specs of fuzz_bodies half the positive bodies are admitted (at 150: 78 created, 21
# cancelled)
STATEFUL_EXAMPLES = 75
_SETTINGS = dict(
    derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

# The benchmark's configuration (benchmarks/service/fuzz.py: which operations may rightly refuse a
# schema-valid input with their documented 422, and why). Here the stateful phase follows
# the jobs' links within its fixed budget; the other resources are fuzzed above and tested
# by their own suites (tests/api/test_studies.py, tests/worker/test_webhooks.py,
# tests/api/test_audit.py), and `python -m benchmarks.service.fuzz` walks every resource's links.
_CONFIG = fuzz_config(stateful=False)
# Every operation of the schema, each fuzzed by test_every_operation_answers_per_its_schema:
# a new route must be added here (and so be fuzzed in CI).
OPERATIONS = {
    "GET /healthz", "GET /readyz", "GET /v1/audit",
    "GET /v1/datasets", "POST /v1/datasets", "GET /v1/datasets/{dataset_id}",
    "DELETE /v1/datasets/{dataset_id}",
    "GET /v1/jobs", "POST /v1/jobs", "GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/trace",
    "GET /v1/jobs/{job_id}/result", "GET /v1/jobs/{job_id}/hparams",
    "GET /v1/jobs/{job_id}/learned",
    "POST /v1/jobs/{job_id}/cancel", "POST /v1/jobs/{job_id}/search-around",
    "GET /v1/keys", "POST /v1/keys", "DELETE /v1/keys/{prefix}",
    "GET /v1/pool", "PATCH /v1/teams/{name}", "GET /v1/problems",
    "GET /v1/studies", "POST /v1/studies", "GET /v1/studies/{study_id}",
    "POST /v1/studies/{study_id}/cancel",
    "GET /v1/webhooks", "POST /v1/webhooks", "DELETE /v1/webhooks/{webhook_id}",
    "GET /v1/webhooks/{webhook_id}/deliveries",
}  # fmt: skip

# The schema must exist at import, when pytest parametrizes over its operations: its
# sessions are bound to the session's database by the `bound` fixture. The per-key rate
# limit and the failed-authentication limit are off (fuzz_settings says why).
_sessions = sessionmaker(expire_on_commit=False)
app = create_app(
    fuzz_settings(database_url="postgresql://unbound"),
    dispatcher=RecordingDispatcher(),
    sessions=_sessions,
)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", app, config=schemathesis.Config.from_dict(_CONFIG)
)
# The walks over the studies', data sets' and webhooks' links, one resource a walk: the same
# app, its stateful phase kept to that resource's paths (the state machine is made of every
# operation whose stateful phase is on, whatever `schema.include` says; with all three in
# one walk a bounded run followed no webhook's link)
WALKED = ("studies", "datasets", "webhooks")
walks = {
    name: schemathesis.openapi.from_asgi(
        "/openapi.json",
        app,
        config=schemathesis.Config.from_dict(fuzz_config(stateful=f"/v1/{name}")),
    )
    for name in WALKED
}
# about half the positive bodies of the creating routes are valid ones (fuzz_bodies): jobs,
# studies, small .npz data sets, and webhooks to the module's loopback receiver
_RECEIVER: list[Receiver] = []
for _schema in (schema, *walks.values()):
    fuzz_bodies.install(_schema, webhook_url=lambda: _RECEIVER[0].url)

# Coverage cases are built at collection, before any fixture: they carry this placeholder,
# swapped for the real key just before each call. Through an auth provider schemathesis
# knows that the schema's security is met, and leaves it out of the cases meant to lack it.
_PENDING = "Bearer pending-key"
_KEY: dict[str, str] = {}
TRIED: dict[str, dict[str, Counter]] = {
    phase: defaultdict(Counter)
    for phase in ("fuzz", "stateful", *(f"stateful-{n}" for n in WALKED))
}
_phase = ["fuzz"]


class _BearerKey:
    def get(self, case, ctx):
        return _PENDING

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": data}


for _schema in (schema, *walks.values()):
    _schema.auth()(_BearerKey)


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.headers and case.headers.get("Authorization") == _PENDING:
        case.headers["Authorization"] = f"Bearer {_KEY['key']}"


@schemathesis.hook
def after_call(context, case, response):
    TRIED[_phase[0]][f"{case.method} {case.operation.path}"][str(response.status_code)] += 1


@pytest.fixture(scope="module")
def bound(pg_url):
    engine = make_engine(pg_url)
    _sessions.configure(bind=engine)
    yield _sessions
    engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def receiver():
    _RECEIVER.append(Receiver())
    yield _RECEIVER[0]
    _RECEIVER.pop().close()


@pytest.fixture(scope="module", autouse=True)
def api_key(bound) -> str:
    # admin: the key routes answer too, not only with 403
    _, _KEY["key"] = team_with_key(bound, scope="admin")
    return _KEY["key"]


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    counts = {phase: sum(sum(c.values()) for c in ops.values()) for phase, ops in TRIED.items()}
    summary = {
        "schemathesis": schemathesis.__version__,
        "max_examples": MAX_EXAMPLES,
        "stateful_examples": STATEFUL_EXAMPLES,
        "inputs": sum(counts.values()),
        **{f"{phase}_inputs": n for phase, n in counts.items()},
        "statuses": {p: {op: dict(c) for op, c in sorted(ops.items())} for p, ops in TRIED.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nschemathesis {schemathesis.__version__} tried {summary['inputs']} inputs {counts}")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, **_SETTINGS)
def test_every_operation_answers_per_its_schema(case):
    case.call_and_validate()


def test_linked_operations_hold_up_statefully(bound):
    _phase[0] = "stateful"
    # a team of its own: the fuzz phase's Idempotency-Keys (and queued jobs, studies) are
    # another team's, so a key generated again here is a new submit, not a 409 replay
    _, _KEY["key"] = team_with_key(bound, scope="admin")
    try:
        # the walks follow the jobs' links (create -> read, trace, cancel): the other
        # resources are fuzzed above and tested by their own suites; left in, they thin out
        # the bounded walks, and the pool's PATCH /v1/teams can close the team's own quota
        # (search-around makes a study: its walk is the studies'; here it would only thin out
        # the jobs' links)
        linked = schema.include(path_regex=r"^/v1/jobs(?!/\{job_id\}/search-around)")

        class Walk(linked.as_state_machine()):  # type: ignore[misc]
            def setup(self) -> None:
                # each walk on a team of its own: a link from GET /v1/jobs draws from the
                # team's list, which must hold only this walk's jobs for hypothesis to
                # replay the walk as it ran (jobs of earlier walks stay in the store)
                _, _KEY["key"] = team_with_key(bound, scope="admin")

        Walk.run(
            settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, **_SETTINGS)
        )
    finally:
        _phase[0] = "fuzz"
    # the links were followed: jobs were created, then read or traced, asked for results
    # they do not have yet (409: the job exists, it has not finished), and cancelled. Which
    # linked read a bounded walk picks varies with how many generated specs are admitted,
    # so the reads count together; a broken link would answer only 404s.
    ops = TRIED["stateful"]
    seen = {op: dict(ops[op]) for op in ops}
    assert ops["POST /v1/jobs"]["201"] > 0, seen
    assert ops["POST /v1/jobs/{job_id}/cancel"]["202"] > 0, seen
    reads = ("GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/trace")
    assert sum(ops[op]["200"] for op in reads) > 0, seen
    pending = ("result", "hparams", "learned")
    assert sum(ops[f"GET /v1/jobs/{{job_id}}/{op}"]["409"] for op in pending) > 0, seen


# The study, data set and webhook routes: each answers its success at least once in the walks
SUCCESS = {
    "studies": {
        "POST /v1/studies": "201", "GET /v1/studies/{study_id}": "200",
        "POST /v1/studies/{study_id}/cancel": "202", "GET /v1/studies": "200",
    },
    "datasets": {
        "POST /v1/datasets": "201", "GET /v1/datasets/{dataset_id}": "200",
        "DELETE /v1/datasets/{dataset_id}": "200", "GET /v1/datasets": "200",
    },
    "webhooks": {
        "POST /v1/webhooks": "201", "DELETE /v1/webhooks/{webhook_id}": "200",
        "GET /v1/webhooks/{webhook_id}/deliveries": "200", "GET /v1/webhooks": "200",
    },
}  # fmt: skip
WALK_EXAMPLES = 25


@pytest.mark.parametrize("name", WALKED)
def test_study_dataset_and_webhook_links_reach_their_success_paths(bound, name):
    # the stateful walks over one resource's links: with the valid bodies of fuzz_bodies a
    # create succeeds often enough that its id is followed to the linked reads, deletes and
    # cancels, and each of those answers its success at least once
    _phase[0] = f"stateful-{name}"
    try:

        class Walk(walks[name].as_state_machine()):  # type: ignore[misc]
            def setup(self) -> None:
                # a team of its own per walk (see the jobs' walk above)
                _, _KEY["key"] = team_with_key(bound, scope="admin")

        Walk.run(settings=settings(max_examples=WALK_EXAMPLES, stateful_step_count=6, **_SETTINGS))
    finally:
        _phase[0] = "fuzz"
    ops = TRIED[f"stateful-{name}"]
    seen = {op: dict(ops[op]) for op in ops}
    assert set(ops) <= set(SUCCESS[name]), seen  # the walk kept to its resource
    missing = {op: code for op, code in SUCCESS[name].items() if ops[op][code] == 0}
    assert not missing, (missing, seen)


def test_every_operation_is_in_the_inventory():
    served = {f"{r.ok().method.upper()} {r.ok().path}" for r in schema.get_all_operations()}
    assert served == OPERATIONS


def test_405_allows_every_method_of_the_path_and_an_undecodable_body_is_a_422_problem():
    # the first two things schemathesis found: Allow named one route's methods, and a body
    # that is not UTF-8 got an undocumented 400
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        r = client.request("DELETE", "/v1/jobs")
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
        r = client.post(
            "/v1/jobs",
            content=b"\xe8H\xcd\x98",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {_KEY['key']}"},
        )
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == ["(body)"]
