"""``bilevel serve``, ``bilevel worker`` and ``bilevel migrate``: the server side.

The API, the workers and the store are imported inside the commands, never by this module:
the client commands share its parser without loading them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from cli.errors import UsageError
from cli.settings import KEY_FILE
from cli.store import ensure_local_key, key_secret, previous_key_secret, settings_for
from jobs.status import QueueKind

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["add_commands", "cmd_migrate", "cmd_serve", "cmd_worker"]

_LOG_LEVELS = ["debug", "info", "warning", "error"]


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app
    from api.settings import ApiSettings
    from jobs.store.db import make_engine, make_session_factory
    from migrations import upgrade

    settings = settings_for(ApiSettings, args)
    key_secret(settings)  # refuse to start without one, before anything else starts
    previous_key_secret(settings)  # and with a bad previous one
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
    app: FastAPI | None
    if not settings.broker_url:
        from worker.local import LocalExecutor
        from worker.settings import WorkerSettings

        engine = make_engine(settings.store_url, prepared=settings.db_prepared_statements)
        sessions = make_session_factory(engine)
        executor = LocalExecutor(sessions, settings_for(WorkerSettings, args)).start()
        app = create_app(settings, dispatcher=executor, sessions=sessions)
        key = ensure_local_key(settings, sessions) if settings.embedded else None
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
        if app is None:  # workers > 1
            # each process builds its own app from the environment (same settings)
            uvicorn.run(
                "api.main:create_app", factory=True, workers=workers, host=host, port=port,
                log_level=args.log_level,
            )  # fmt: skip
        else:
            uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    finally:
        if executor is not None:
            from worker.shutdown import request_shutdown

            request_shutdown()  # the running job checkpoints and waits for the next start
            executor.stop(timeout=5)
        if engine is not None:
            engine.dispose()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """One ``celery worker --pool solo`` per GPU (or one on the CPU queue)."""
    from worker.settings import WorkerSettings

    settings = settings_for(WorkerSettings, args)
    if not settings.broker_url or not settings.database_url:
        raise UsageError(
            "bilevel worker needs DATABASE_URL and BROKER_URL (embedded mode runs jobs in serve)"
        )
    base = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"]
    base += ["--without-gossip", "--without-mingle", "-l", args.log_level.upper()]
    if not args.gpus:
        name = f"{QueueKind.CPU}-{os.getpid()}@%h"
        cmd = [*base, "-Q", settings.queue_name(QueueKind.CPU), "-n", name]
        return subprocess.call(cmd)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if not all(g.isdigit() for g in gpus):
        raise UsageError(f"--gpus must be a list like 0,1, got {args.gpus!r}")
    procs = []
    for g in gpus:
        # each process sees one device as cuda:0 and never forks after touching CUDA; the
        # rest of the child's environment is this process's (its settings come from there)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": g}
        name = f"{QueueKind.GPU}{g}-{os.getpid()}@%h"
        cmd = [*base, "-Q", settings.queue_name(QueueKind.GPU), "-n", name]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        return max(p.wait() for p in procs)


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobs.settings import StoreSettings
    from migrations import upgrade

    settings = settings_for(StoreSettings, args)
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.store_url, args.revision)
    print(f"bilevel: migrated to {args.revision}", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``worker`` and ``migrate``."""
    p = commands.add_parser("serve", help="run the API (embedded: SQLite + in-process executor)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--state-dir", help="embedded mode's data directory (BILEVEL_STATE_DIR)")
    p.add_argument("--log-level", default="info", choices=_LOG_LEVELS)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (distributed mode only; 2 on a small shared machine, see README)",
    )
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("worker", help="run Celery workers: one per GPU, or one on CPU")
    p.add_argument("--gpus", help="comma-separated device indices, e.g. 0,1")
    p.add_argument("--log-level", default="info", choices=_LOG_LEVELS)
    p.set_defaults(func=cmd_worker)

    p = commands.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    p.add_argument("--revision", default="head")
    p.add_argument("--state-dir", help="embedded mode's data directory")
    p.set_defaults(func=cmd_migrate)
