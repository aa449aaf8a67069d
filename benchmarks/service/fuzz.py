"""Schemathesis at scale against the live app: every route, every check, the stateful links.

    .venv/bin/python -m benchmarks.service.fuzz [--examples 300] [--database-url URL] [--out FILE]

Runs schemathesis's own engine (the one behind ``schemathesis run``) in process against
the app over ASGI, authenticated with an admin API key: the examples, coverage, fuzzing and
stateful phases over every operation (jobs, datasets, studies, teams, keys, webhooks, pool,
problems, audit), all checks, following the schema's links (declared ones, and those
schemathesis infers from ``Location`` headers and matching parameter names).
``--examples`` is hypothesis's ``max_examples`` per operation and per stateful run
(``--examples 800``: over 20,000 inputs). About half the positive bodies of the creating
routes are valid ones (:mod:`benchmarks.service.fuzz_bodies`: jobs, grid and search
studies, small ``.npz`` data sets, webhooks to a loopback receiver), so the creates succeed
and the stateful phase follows their ids to the linked routes; the report lists the
operations that answered a 2xx, in the stateful phase and at all (the job result routes
answer 409 while the job has not ended: no worker runs here).

The store is an embedded SQLite one in a temporary directory unless ``--database-url``
names a migrated database; jobs are queued and never run (no worker: the API is what is
fuzzed). Prints the inputs sent by phase and status, each distinct server error (5xx) and
schema-violating response (a failed check, by check and operation), the duration and the
date, writes them as JSON to ``--out``, and exits 1 if there is any failure.

``tests/api/test_schema_fuzz.py`` runs the same configuration (:func:`fuzz_config`) with a
smaller budget in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ACCEPTED", "WEBHOOK_ALLOW", "fuzz_config", "fuzz_settings", "main"]

# What an operation may rightly answer to a schema-valid input besides 2xx: auth, another
# team's object, a conflict with the store's state, a rate limit or quota.
ACCEPTED: list[str | int] = ["2XX", "3XX", 401, 403, 404, 409, 429]
# Operations whose schema-valid inputs may still be refused with their documented 422: a
# spec whose fields disagree (K or segment > inner.steps, mu > L: JSON Schema cannot relate
# fields) or that has a whole float for an integer (strict mode; JSON Schema counts 96.0 as
# an integer), a data set upload whose bytes are no .npz or .safetensors file (a binary
# body's schema says nothing of its format), a study's grid whose paths or values the job
# spec refuses (checked against the spec, not expressible in the grid's schema), a search
# around a job whose neighbourhood the admission refuses (twice its inner steps over the
# limit), and a webhook URL outside the operator's allowed addresses (a setting).
REFUSES_VALID = ("POST /v1/jobs", "POST /v1/datasets", "POST /v1/studies",
                 "POST /v1/jobs/{job_id}/search-around", "POST /v1/webhooks")  # fmt: skip
# the webhook receivers the fuzzed app allows: the loopback receiver of the generated
# webhooks (benchmarks.service.fuzz_bodies); a generated URL elsewhere is refused with 422
WEBHOOK_ALLOW = "127.0.0.1/32"


def fuzz_config(
    *, stateful: bool | str = True, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The schemathesis configuration the benchmark and the CI test share.

    Args:
        stateful: whether the stateful phase walks every resource's links (True), or a
            regular expression of the paths whose links it walks (the CI test's walks each
            keep to a few resources: bounded walks thin out over every resource); False
            is the jobs' (``/v1/jobs``).
        extra: more top-level configuration (``generation``, ``phases``).

    Returns:
        A dict for ``schemathesis.Config.from_dict``.
    """
    operations: list[dict[str, Any]] = [
        {
            "include-name": name,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 422]}},
        }
        for name in REFUSES_VALID
    ]
    # DELETE /v1/webhooks/{id} revokes: the webhook and its deliveries stay readable (the
    # route's documented answer), which the use-after-free check would take for a leak
    operations.append(
        {
            "include-name": "GET /v1/webhooks/{webhook_id}/deliveries",
            "checks": {"use_after_free": {"enabled": False}},
        }
    )
    if stateful is not True:
        # only these paths' links: the state machine follows every operation with links
        # (whatever `schema.include` says), and each resource's walk thins out the others'
        walked = "/v1/jobs" if stateful is False else stateful
        operations.append(
            {"include-path-regex": f"^(?!{walked})", "phases": {"stateful": {"enabled": False}}}
        )
    return {
        "generation": {"deterministic": True},
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        "operations": operations,
        **(extra or {}),
    }


def fuzz_settings(**over: Any) -> Any:
    """The app's settings for fuzzing, ``over`` on top.

    One key sends hundreds of requests a second, schemathesis's ``ignored_auth`` check sends
    wrong keys on purpose, and no worker runs the queued jobs: neither the per-key rate
    limit, nor the failed-authentication limit, nor the queued-jobs quota may hide the
    answers behind 429s (each has its own tests).
    """
    from api import ApiSettings

    return ApiSettings(**{"broker_url": None, "rate_limit_per_s": 0, "auth_failure_limit": 0,
                          "max_queued_jobs": 1_000_000, "webhook_allow": [WEBHOOK_ALLOW],
                          **over})  # fmt: skip


class _Queued:
    """A dispatcher that sends nothing: jobs stay queued; the API is what is fuzzed."""

    def send(self, job_id: Any, queue: str) -> None:
        pass

    def ping(self) -> bool:
        return True


def _app(database_url: str | None, state_dir: Path) -> tuple[Any, Callable[[], tuple[str, str]]]:
    """The fuzzed app and a function that makes a new admin key of its team (prefix, key)."""
    from api import create_app
    from jobs.keys import load_key_secret
    from jobs.status import KeyScope
    from jobs.store import repo
    from jobs.store.db import make_engine, make_session_factory
    from migrations import upgrade

    over: dict[str, Any] = {"state_dir": state_dir, "key_secret": "fuzz-" + "0" * 32}
    if database_url:
        over["database_url"] = database_url
    settings = fuzz_settings(**over)
    upgrade(settings.store_url)
    sessions = make_session_factory(make_engine(settings.store_url))
    name = f"fuzz-{int(time.time())}"

    def new_key() -> tuple[str, str]:
        with sessions.begin() as s:
            team = repo.ensure_team(s, name)
            row, key = repo.create_api_key(
                s,
                team,
                "fuzz",
                secret=load_key_secret(settings),
                scope=KeyScope.ADMIN,
                actor=repo.Actor.operator(team.id),
            )
            return row.prefix, key

    return create_app(settings, dispatcher=_Queued(), sessions=sessions), new_key


def run(examples: int, database_url: str | None) -> dict[str, Any]:
    """Fuzz the app; the figures and failures as a dict (see the module's docstring)."""
    import schemathesis
    from schemathesis.core.result import Ok
    from schemathesis.engine import Status, events, from_schema

    from benchmarks.service import fuzz_bodies
    from tests.support import Receiver

    started, t0 = datetime.now(UTC), time.perf_counter()
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bilevel-fuzz-") as tmp:
        app, new_key = _app(database_url, Path(tmp))
        extra = {"generation": {"deterministic": True, "max-examples": examples}}
        config = schemathesis.Config.from_dict(fuzz_config(extra=extra))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        # The fuzzer's own admin key, renewed when the fuzzer revokes it: with another admin
        # key created (POST /v1/keys), DELETE /v1/keys/{prefix} of the fuzzer's own prefix
        # (read back from GET /v1/keys) is a rightful 200, after which every call was a 401
        keys = [new_key()]

        @schema.auth(refresh_interval=None)
        class _Key:
            def get(self, case: Any, ctx: Any) -> str:
                return keys[-1][1]

            def set(self, case: Any, data: str, ctx: Any) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

        @schema.hook
        def after_call(context: Any, case: Any, response: Any) -> None:
            revoked = (case.path_parameters or {}).get("prefix")
            if (
                case.method == "DELETE"
                and response.status_code == 200
                and (case.operation.path == "/v1/keys/{prefix}" and revoked == keys[-1][0])
            ):
                keys.append(new_key())

        # valid jobs, studies, data sets and webhooks (to the loopback receiver) among the
        # generated bodies: the creates succeed, and the stateful phase follows their ids
        fuzz_bodies.install(schema, webhook_url=receiver.url)
        sent: dict[str, Counter[str]] = defaultdict(Counter)
        by_op: dict[str, Counter[str]] = defaultdict(Counter)
        ok_by_phase: dict[str, set[str]] = defaultdict(set)
        failures: dict[tuple[str, str, str], dict[str, Any]] = {}
        errors: list[str] = []
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                rec = event.recorder
                for case_id, inter in rec.interactions.items():
                    status = str(inter.response.status_code) if inter.response else "none"
                    sent[str(event.phase.value)][status] += 1
                    node = rec.cases.get(case_id)
                    label = node.value.operation.label if node is not None else rec.label
                    by_op[label][status] += 1
                    if status[0] == "2":
                        ok_by_phase[str(event.phase.value)].add(label)
                for case_id, checks in rec.checks.items():
                    for check in checks:
                        if check.status != Status.FAILURE or check.failure_info is None:
                            continue
                        failure = check.failure_info.failure
                        node = rec.cases.get(case_id)
                        label = node.value.operation.label if node is not None else rec.label
                        key_ = (check.name, label, failure.title)
                        entry = failures.setdefault(key_, {
                            "check": check.name, "operation": label, "title": failure.title,
                            "message": failure.message[:500],
                            "reproduce": check.failure_info.code_sample[:1000], "count": 0,
                        })  # fmt: skip
                        entry["count"] += 1
            elif isinstance(event, events.NonFatalError):
                errors.append(f"{event.label}: {event.info.format()[:500]}")
            elif isinstance(event, events.FatalError):
                errors.append(f"fatal: {event.exception!r}")
        operations = sorted(r.ok().label for r in schema.get_all_operations() if isinstance(r, Ok))
    receiver.close()
    inputs = sum(sum(c.values()) for c in sent.values())
    server_errors = sum(n for ops in by_op.values() for s, n in ops.items() if s[0] == "5")
    return {
        "command": "python -m benchmarks.service.fuzz " + " ".join(sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "schemathesis": schemathesis.__version__,
        "store": "postgresql" if database_url else "sqlite (embedded)",
        "max_examples": examples,
        "duration_s": round(time.perf_counter() - t0, 1),
        "inputs": inputs,
        "server_errors": server_errors,
        "schema_violations": sum(
            f["count"] for f in failures.values() if f["check"] != "not_a_server_error"
        ),
        "distinct_failures": len(failures),
        "inputs_by_phase": {p: dict(c) for p, c in sorted(sent.items())},
        # the routes that answered a 2xx (in any phase, in the stateful phase) and those
        # that never did
        "operations_2xx": sum(any(s[0] == "2" for s in by_op[op]) for op in operations),
        "operations": len(operations),
        "stateful_2xx": sorted(ok_by_phase.get("stateful", set())),
        "without_2xx": [op for op in operations if not any(s[0] == "2" for s in by_op[op])],
        "inputs_by_operation": {op: dict(c) for op, c in sorted(by_op.items())},
        "failures": list(failures.values()),
        "engine_errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 on any server error, violation or engine error."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.service.fuzz", description=__doc__)
    p.add_argument("--examples", type=int, default=300, help="max_examples per operation")
    p.add_argument("--database-url", help="a migrated database (default: embedded SQLite)")
    p.add_argument("--out", type=Path, default=Path("out/fuzz.json"))
    args = p.parse_args(argv)
    report = run(args.examples, args.database_url)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for op, statuses in report["inputs_by_operation"].items():
        print(f"{op:45} {dict(sorted(statuses.items()))}")
    for f in report["failures"]:
        print(f"FAIL {f['check']} {f['operation']}: {f['title']} (x{f['count']})\n"
              f"  {f['message']}\n  {f['reproduce']}")  # fmt: skip
    for e in report["engine_errors"]:
        print(f"ERROR {e}")
    print(f"2xx from {report['operations_2xx']} of {report['operations']} operations; never: "
          f"{report['without_2xx']}; in the stateful phase: {report['stateful_2xx']}")  # fmt: skip
    print(f"{report['date']}: {report['inputs']} inputs {report['inputs_by_phase']} in "
          f"{report['duration_s']} s; {report['server_errors']} server errors, "
          f"{report['schema_violations']} schema violations, {report['distinct_failures']} "
          f"distinct failures, {len(report['engine_errors'])} engine errors")  # fmt: skip
    bad = report["failures"] or report["engine_errors"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
