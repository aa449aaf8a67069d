"""``bilevel`` service commands: serve, worker, migrate, keys, submit, status, watch, trace,
cancel and run.

``add_commands(subparsers)`` adds them to the ``bilevel`` parser; every command sets
``func(args) -> int``. Client commands talk to ``--url`` (``BILEVEL_URL``) with ``--key``
(``BILEVEL_API_KEY``, else the key ``serve`` wrote under the state directory). Store
commands (``keys``, ``migrate``) work on the same store as ``serve``: ``DATABASE_URL``, or
SQLite under ``--state-dir`` (``BILEVEL_STATE_DIR``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.errors import UsageError
from jobs.status import TERMINAL, JobStatus

__all__ = ["add_commands", "main"]

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_FILE = "api_key"


# -- settings and store ----------------------------------------------------------------------


def _settings(cls, args: argparse.Namespace, **extra: Any):
    over = dict(extra)
    if getattr(args, "state_dir", None):
        over["state_dir"] = Path(args.state_dir)
    return cls(**over)


def _store(args: argparse.Namespace):
    """Settings and a session factory on the configured store (migrating SQLite first)."""
    from jobs.db import make_engine, make_session_factory, upgrade
    from jobs.settings import StoreSettings

    settings = _settings(StoreSettings, args)
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.store_url)
    return settings, make_session_factory(make_engine(settings.store_url))


def _key_secret(settings) -> bytes:
    """The server secret API keys are hashed with (see ``jobs.keys``), or a usage error."""
    from jobs.keys import KeySecretError, load_key_secret

    try:
        return load_key_secret(settings)
    except KeySecretError as exc:
        raise UsageError(str(exc)) from None


def _previous_key_secret(settings) -> bytes | None:
    """The secret a rotation retires (``BILEVEL_KEY_SECRET_PREVIOUS``), or a usage error."""
    from jobs.keys import KeySecretError, load_previous_key_secret

    try:
        return load_previous_key_secret(settings)
    except KeySecretError as exc:
        raise UsageError(str(exc)) from None


def _secret_names(settings) -> dict[str | None, str]:
    """``secret_id -> "current" | "previous"`` for ``keys list``; empty without secrets."""
    from jobs.keys import KeySecretError, load_key_secret, load_previous_key_secret, secret_id

    names: dict[str | None, str] = {}
    try:
        names[secret_id(load_key_secret(settings))] = "current"
        previous = load_previous_key_secret(settings)
    except KeySecretError:
        return names  # listing needs no secret: the column then shows the raw fingerprints
    if previous is not None:
        names[secret_id(previous)] = "previous"
    return names


def _ensure_local_key(settings, sessions) -> str | None:
    """First embedded start: a team ``local`` with one admin key, saved (0600) under state_dir.

    The key is the owner's, so it is admin-scoped (it may manage the team's keys through
    ``/v1/keys``); a key file from before scopes existed is promoted on the next start.
    """
    from sqlalchemy import select

    from jobs import repo
    from jobs.models import Team

    secret = _key_secret(settings)
    path = settings.resolved_state_dir / KEY_FILE
    with sessions.begin() as s:
        if s.scalar(select(Team.id).limit(1)) is not None and path.exists():
            # also rehashes a legacy SHA-256 row to the keyed hash
            principal = repo.verify_key(
                s, path.read_text().strip(), secret=secret, previous=_previous_key_secret(settings)
            )
            if principal is not None and not principal.admin:
                repo.set_api_key_scope(s, principal.prefix, "admin")
            return None
        team = repo.ensure_team(s, "local")
        _, key = repo.create_api_key(s, team, name="local", secret=secret, scope="admin")
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


# -- server side -----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app
    from api.settings import ApiSettings
    from jobs.db import make_engine, make_session_factory, upgrade

    settings = _settings(ApiSettings, args)
    _key_secret(settings)  # refuse to start without one, before anything else starts
    _previous_key_secret(settings)  # and with a bad previous one
    workers = args.workers
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and not settings.broker_url:
        # SQLite and the in-process executor live in this one process
        raise UsageError(
            f"--workers {workers} needs the distributed mode (DATABASE_URL and BROKER_URL); "
            "the embedded mode serves from one process"
        )
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    engine = None
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.store_url)
    executor = None
    if not settings.broker_url:
        from worker.local import LocalExecutor
        from worker.settings import WorkerSettings

        engine = make_engine(settings.store_url)
        sessions = make_session_factory(engine)
        executor = LocalExecutor(sessions, _settings(WorkerSettings, args)).start()
        app = create_app(settings, dispatcher=executor, sessions=sessions)
        key = _ensure_local_key(settings, sessions) if settings.embedded else None
    else:
        app = create_app(settings) if workers == 1 else None
        key = None
    url = f"http://{host}:{port}"
    print(f"bilevel: serving on {url} (docs at {url}/docs)", flush=True)
    if settings.embedded:
        print(f"bilevel: state in {settings.resolved_state_dir}", flush=True)
        if key:
            print(f"bilevel: API key (shown once, also in {KEY_FILE}): {key}", flush=True)
        key_file = settings.resolved_state_dir / KEY_FILE
        if key_file.exists():
            # the fragment never reaches the server; the page moves it to its storage
            signed_in = f"{url}/#key={key_file.read_text().strip()}"
            print(f"bilevel: dashboard (signed in): {signed_in}", flush=True)
    try:
        if workers > 1:
            # each process builds its own app from the environment (same settings)
            uvicorn.run(
                "api.main:create_app", factory=True, workers=workers, host=host, port=port,
                log_level=args.log_level,
            )  # fmt: skip
        else:
            uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    finally:
        if executor is not None:
            from worker.runner import request_shutdown

            request_shutdown()  # the running job checkpoints and waits for the next start
            executor.stop(timeout=5)
        if engine is not None:
            engine.dispose()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """One ``celery worker --pool solo`` per GPU (or one on the CPU queue)."""
    from worker.settings import WorkerSettings

    settings = _settings(WorkerSettings, args)
    if not settings.broker_url or not settings.database_url:
        raise UsageError(
            "bilevel worker needs DATABASE_URL and BROKER_URL (embedded mode runs jobs in serve)"
        )
    base = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"]
    base += ["--without-gossip", "--without-mingle", "-l", args.log_level.upper()]
    if not args.gpus:
        cmd = [*base, "-Q", settings.queue_name("cpu"), "-n", f"cpu-{os.getpid()}@%h"]
        return subprocess.call(cmd)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if not all(g.isdigit() for g in gpus):
        raise UsageError(f"--gpus must be a list like 0,1, got {args.gpus!r}")
    procs = []
    for g in gpus:
        # each process sees one device as cuda:0 and never forks after touching CUDA
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": g}
        cmd = [*base, "-Q", settings.queue_name("gpu"), "-n", f"gpu{g}-{os.getpid()}@%h"]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        return max(p.wait() for p in procs)


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobs.db import upgrade
    from jobs.settings import StoreSettings

    settings = _settings(StoreSettings, args)
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.store_url, args.revision)
    print(f"bilevel: migrated to {args.revision}", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from jobs import repo

    settings, sessions = _store(args)
    if args.action == "create":
        secret = _key_secret(settings)
        scope = "admin" if args.admin else "team"
        with sessions.begin() as s:
            team = repo.ensure_team(s, args.team)
            _, key = repo.create_api_key(s, team, name=args.name or "", secret=secret, scope=scope)
        print(key)
        return 0
    if args.action == "list":
        with sessions() as s:
            rows = repo.list_api_keys(s, args.team)
        names = _secret_names(settings)
        for k, team in rows:
            state = "revoked" if k.revoked_at else "active"
            if k.hash_scheme != "hmac-sha256":
                hashed = "sha256"  # pre-0003: rehashed on next use
            else:
                hashed = names.get(k.secret_id, k.secret_id or "unknown")
            print(f"{k.prefix}\t{team}\t{k.name}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}"
                  f"\t{k.scope}\t{hashed}")  # fmt: skip
        return 0
    with sessions.begin() as s:
        ok = repo.revoke_api_key(s, args.prefix)
    if not ok:
        raise UsageError(f"no active key with prefix {args.prefix!r}")
    print(f"revoked {args.prefix}", file=sys.stderr)
    return 0


# -- client side -----------------------------------------------------------------------------


class _Client:
    def __init__(self, args: argparse.Namespace):
        import httpx

        key = args.key or os.environ.get("BILEVEL_API_KEY")
        if not key:
            from jobs.settings import StoreSettings

            path = _settings(StoreSettings, args).resolved_state_dir / KEY_FILE
            if path.exists():
                key = path.read_text().strip()
        if not key:
            raise UsageError("no API key: pass --key or set BILEVEL_API_KEY")
        url = args.url or os.environ.get("BILEVEL_URL", DEFAULT_URL)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def call(self, method: str, path: str, **kw: Any):
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self.http.base_url}: {exc}") from None
        if r.status_code >= 400:
            try:
                body = r.json()
                detail = body.get("detail", r.text)
                fields = [f"{e['field']}: {e['message']}" for e in body.get("errors", [])]
                if fields:
                    detail = "; ".join(fields)
            except ValueError:
                detail = r.text
            raise UsageError(f"HTTP {r.status_code}: {detail}")
        return r


def _read_spec(path: str) -> dict[str, Any]:
    from pydantic import ValidationError

    from api.settings import ApiSettings
    from jobs.budget import check_budget
    from jobs.spec import field_errors, parse_spec

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # the same compute budget as the API's (BILEVEL_MAX_INNER_STEPS, ..._GRAPH_BYTES)
        return check_budget(parse_spec(text), ApiSettings().budget).model_dump(mode="json")
    except ValidationError as exc:
        errs = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
        raise UsageError(f"{path}: {errs}") from None


def cmd_submit(args: argparse.Namespace) -> int:
    spec = _read_spec(args.file)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    job = _Client(args).call("POST", "/v1/jobs", json=spec, headers=headers).json()
    print(job["id"])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    job = _Client(args).call("GET", f"/v1/jobs/{args.id}").json()
    print(json.dumps(job, indent=2))
    return 0


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, width: int = 30):
        self.total, self.width, self.tty = max(total, 1), width, sys.stderr.isatty()
        self.last, self.shown_at, self.step = "", 0.0, -1

    def show(self, done: int, text: str = "") -> None:
        frac = min(done / self.total, 1.0)
        # a terminal redraws at most 10 times a second; a log gets a line per 5%
        now, step = time.monotonic(), int(frac * 20)
        if done < self.total and (
            (self.tty and now - self.shown_at < 0.1) or (not self.tty and step == self.step)
        ):
            return
        self.shown_at, self.step = now, step
        bar = "#" * int(frac * self.width)
        line = f"[{bar:<{self.width}}] {done}/{self.total} {text}"
        if line != self.last:
            sys.stderr.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))
            sys.stderr.flush()
            self.last = line

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def cmd_watch(args: argparse.Namespace) -> int:
    client = _Client(args)
    job = client.call("GET", f"/v1/jobs/{args.id}").json()
    bar = _Bar(job["progress"]["iterations"])
    while True:
        p = job["progress"]
        loss = (job.get("summary") or {}).get("last_outer_loss")
        eta = f" eta {p['eta_s']:.0f}s" if p.get("eta_s") else ""
        bar.show(p["iteration"], f"{job['status']}" + (f" loss {loss:.4g}" if loss else "") + eta)
        if job["status"] in TERMINAL:
            break
        time.sleep(args.interval)
        job = client.call("GET", f"/v1/jobs/{args.id}").json()
    bar.close()
    if job["status"] == JobStatus.FAILED and job.get("error"):
        print(f"{job['error']['type']}: {job['error']['detail']}", file=sys.stderr)
    print(job["status"])
    return 0 if job["status"] == JobStatus.SUCCEEDED else 1


def cmd_trace(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"after": args.after}
    if args.max_points:
        params["max_points"] = args.max_points
    if args.fields:
        params["fields"] = args.fields
    cols = _Client(args).call("GET", f"/v1/jobs/{args.id}/trace", params=params).json()
    _print_columns(cols, args.format)
    return 0


def _print_columns(cols: dict[str, list], fmt: str) -> None:
    names = list(cols)
    rows = list(zip(*(cols[n] for n in names)))
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows(rows)
        return
    print("  ".join(f"{n:>13}" for n in names))
    for row in rows:
        print("  ".join(f"{_fmt(v):>13}" for v in row))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def cmd_cancel(args: argparse.Namespace) -> int:
    job = _Client(args).call("POST", f"/v1/jobs/{args.id}/cancel").json()
    print(job["status"] + (" (stop requested)" if job["cancel_requested"] else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """A job in this process, no server: progress bar, then trace.csv and hparams.npz."""
    import core
    from jobs.spec import parse_spec
    from worker.build import build, hparams_npz, to_jsonable

    spec = parse_spec(_read_spec(args.file))
    built = build(spec, os.environ.get("BILEVEL_DATA_DIR"))
    bar = _Bar(spec.outer.iterations)

    def progress(record: dict[str, float], _state: Any) -> None:
        bar.show(int(record["iteration"]), f"loss {record['outer_loss']:.4g}")

    out = core.fit(
        built.problem,
        built.hparams,
        built.dynamics,
        built.estimator,
        callback=progress,
        **built.fit_kwargs,
    )
    bar.close()
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = built.problem.metrics(res.params, out.hparams)
    summary = {
        "name": spec.name,
        "iterations": out.state.iteration,
        "final_outer_loss": res.outer_loss,
        "best_outer_loss": min(out.history["outer_loss"]),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "hparams": to_jsonable(out.hparams),
    }
    if args.out:
        outdir = Path(args.out)
        outdir.mkdir(parents=True, exist_ok=True)
        with open(outdir / "trace.csv", "w", newline="") as f:
            w = csv.writer(f)
            names = list(out.history)
            w.writerow(names)
            w.writerows(zip(*(out.history[n] for n in names)))
        (outdir / "hparams.npz").write_bytes(hparams_npz(out.hparams))
        (outdir / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


# -- the parser ------------------------------------------------------------------------------


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"service URL (BILEVEL_URL, default {DEFAULT_URL})")
    p.add_argument("--key", help="API key (BILEVEL_API_KEY, else the embedded key file)")
    p.add_argument("--state-dir", help="embedded state directory, to find its key file")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the service subcommands to ``bilevel``'s subparsers."""
    parser_class = commands._parser_class

    p = commands.add_parser("serve", help="run the API (embedded: SQLite + in-process executor)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--state-dir", help="embedded mode's data directory (BILEVEL_STATE_DIR)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (distributed mode only; 2 on a small shared machine, see README)",
    )
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("worker", help="run Celery workers: one per GPU, or one on CPU")
    p.add_argument("--gpus", help="comma-separated device indices, e.g. 0,1")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_worker)

    p = commands.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    p.add_argument("--revision", default="head")
    p.add_argument("--state-dir", help="embedded mode's data directory")
    p.set_defaults(func=cmd_migrate)

    p = commands.add_parser("keys", help="create, list or revoke API keys")
    p.add_argument("--state-dir", help="embedded mode's data directory")
    actions = p.add_subparsers(dest="action", required=True, parser_class=parser_class)
    a = actions.add_parser("create", help="create a key; prints it alone on stdout")
    a.add_argument("--team", required=True)
    a.add_argument("--name", default="")
    a.add_argument("--admin", action="store_true", help="may manage the team's keys (/v1/keys)")
    a = actions.add_parser(
        "list",
        help="list keys (prefix, team, name, created, state, scope, secret: the server secret "
        "the key is hashed under, current or previous during a rotation)",
    )
    a.add_argument("--team")
    a = actions.add_parser("revoke", help="revoke the key with this prefix")
    a.add_argument("prefix")
    p.set_defaults(func=cmd_keys)

    p = commands.add_parser("submit", help="submit a job spec (JSON file); prints the job id")
    p.add_argument("file")
    p.add_argument("--idempotency-key")
    _client_args(p)
    p.set_defaults(func=cmd_submit)

    for name, func, text in (
        ("status", cmd_status, "show a job as JSON"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        p = commands.add_parser(name, help=text)
        p.add_argument("id")
        _client_args(p)
        p.set_defaults(func=func)

    p = commands.add_parser("watch", help="progress bar until the job ends")
    p.add_argument("id")
    p.add_argument("--interval", type=float, default=1.0)
    _client_args(p)
    p.set_defaults(func=cmd_watch)

    p = commands.add_parser("trace", help="print a job's trace as a table or CSV")
    p.add_argument("id")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--max-points", type=int)
    p.add_argument("--fields", help="comma-separated, e.g. outer_loss,grad_norm")
    _client_args(p)
    p.set_defaults(func=cmd_trace)

    p = commands.add_parser("run", help="run a job in this process, no server")
    p.add_argument("file")
    p.add_argument("--out", help="write trace.csv, hparams.npz and result.json here")
    p.set_defaults(func=cmd_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.service ARGS`` is ``bilevel ARGS``."""
    from cli.main import main as bilevel

    return bilevel(argv)


if __name__ == "__main__":
    raise SystemExit(main())
