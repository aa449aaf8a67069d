"""The FastAPI application: ``create_app(settings)``; OpenAPI at ``/docs``.

Distributed mode (``DATABASE_URL`` and ``BROKER_URL``) publishes jobs to Celery; embedded
mode gets its executor from ``bilevel serve``, which passes it as ``dispatcher``. This
package never imports torch.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.authfailures import make_auth_failures
from api.bodylimit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.jobviews import JobViews
from api.openapi import App, operation_id
from api.ratelimit import make_rate_limiter
from api.routes import (
    around,
    audit,
    dashboard,
    datasets,
    health,
    jobs,
    keys,
    learned,
    metrics,
    pool,
    problems,
    studies,
    webhooks,
)
from api.servertiming import ServerTimingMiddleware
from api.settings import ApiSettings
from jobs.dispatch import CeleryDispatcher, Dispatcher
from jobs.keys import KeyCache, load_key_secret, load_previous_key_secret
from jobs.store.db import make_engine, make_session_factory

__all__ = ["create_app"]


def _freeze_startup_heap() -> None:
    """Move what the process holds once started (modules, routes, schemas) out of the GC's reach.

    Measured under the scale benchmark: a full (generation 2) collection walked the ~180,000
    objects of the started app, 90-110 ms of CPU holding the GIL, 400-630 ms of wall time on
    two busy cores; it fell on whichever request allocated past the threshold, most often
    ``/v1/pool`` (the largest body), and made its p99. Frozen objects are never collected
    (a cycle among them would stay), which is what objects that live as long as the process
    need; the garbage already there is collected first so that none of it is frozen. Once
    per process: a server builds one app, and a test session's later apps stay collectable.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


_heap_frozen = False


def create_app(
    settings: ApiSettings | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: read from the environment when omitted.
        dispatcher: how jobs are sent to workers; a Celery client on ``broker_url`` when
            omitted.
        sessions: a session factory; one on ``settings.store_url`` when omitted.

    Raises:
        ValueError: neither a dispatcher nor a broker URL.
        jobs.keys.KeySecretError: no secret to hash API keys with (distributed mode without
            ``BILEVEL_KEY_SECRET``); a ``ValueError`` too.
    """
    settings = settings or ApiSettings()
    key_secret = load_key_secret(settings)
    key_previous_secret = load_previous_key_secret(settings)  # set during a rotation only
    owns_dispatcher = dispatcher is None
    if dispatcher is None:
        if not settings.broker_url:
            raise ValueError(
                "no BROKER_URL: run `bilevel serve` for the embedded mode, or set BROKER_URL"
            )
        dispatcher = CeleryDispatcher(settings.broker_url, settings.queue_prefix)
    rate_limiter = make_rate_limiter(
        settings.rate_limit_per_s, settings.rate_limit_burst, settings.broker_url,
        settings.queue_prefix,
    )  # fmt: skip
    auth_failures = make_auth_failures(
        settings.auth_failure_limit, settings.auth_failure_window_s, settings.broker_url,
        settings.queue_prefix,
    )  # fmt: skip
    engine = None
    if sessions is None:
        # no pre-ping: a dead connection after a store restart fails one request with a 503
        # (api.errors) and invalidates the pool, instead of a SELECT 1 before every request
        engine = make_engine(settings.store_url, pre_ping=False,
                             pool_size=settings.db_pool_size,
                             max_overflow=settings.db_max_overflow,
                             prepared=settings.db_prepared_statements)  # fmt: skip
        sessions = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_heap()
        yield
        await rate_limiter.aclose()
        await auth_failures.aclose()
        if owns_dispatcher and hasattr(dispatcher, "close"):
            dispatcher.close()
        if engine is not None:
            engine.dispose()

    app = App(
        title="bilevel",
        version="1",
        summary="Gradient-based hyperparameter optimization jobs",
        lifespan=lifespan,
        # `jobs-submit_job`, not `submit_job_v1_jobs_post`: generated clients' method names
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.read_sessions = _autocommit(sessions)
    app.state.dispatcher = dispatcher
    app.state.key_secret = key_secret
    app.state.key_previous_secret = key_previous_secret
    app.state.rate_limiter = rate_limiter
    # one count per address for the whole service: in Redis in the distributed mode
    app.state.auth_failures = auth_failures
    # verified keys by HMAC digest; revocation elsewhere waits at most key_cache_ttl_s
    app.state.key_cache = KeyCache(settings.key_cache_ttl_s, settings.key_cache_size)
    # each polled job's body and ETag, made again only when its row changes
    app.state.job_views = JobViews()
    install_error_handlers(app)
    # outermost: an oversized body is refused before anything reads it
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # data set files have their own limit (the route also counts them as they stream)
        overrides={("POST", "/v1/datasets"): (settings.max_upload_bytes, "max_upload_bytes")},
    )
    # outside that: the app's time as the client sees its response start, 413s included
    app.add_middleware(ServerTimingMiddleware)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(learned.router)
    app.include_router(keys.router)
    app.include_router(pool.router)
    app.include_router(metrics.router)
    app.include_router(datasets.router)
    app.include_router(problems.router)
    app.include_router(studies.router)
    app.include_router(around.router)
    app.include_router(webhooks.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    return app


def _autocommit(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for GET requests on PostgreSQL: autocommit, so no BEGIN and ROLLBACK.

    Under READ COMMITTED every statement takes its own snapshot anyway, so a read-only
    request sees the same rows; what it saves is two round trips to the server, each a
    wake-up of a backend process on a busy machine. Other stores get ``sessions`` itself.
    """
    bind = sessions.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return sessions
    return sessionmaker(
        class_=sessions.class_,
        **{**sessions.kw, "bind": bind.execution_options(isolation_level="AUTOCOMMIT")},
    )
