"""``GET /metrics``: the pool in Prometheus's text format, read from the store at each scrape.

The store is the record, so every process (API, workers) counts the same: the figures are
queries, not in-process counters that each API replica would hold apart. Turned off with
``BILEVEL_METRICS=false``.

Each API process answers from its last reading; once that is ``BILEVEL_METRICS_CACHE_S`` old
(a scrape interval), a scrape starts one background read and gets the last reading
(:mod:`api.refresh`): replicas and several scrapers do not multiply the store's work, and
no scrape but a process's first waits for it.

The response names every team, so who may read it is the operator's choice
(``BILEVEL_METRICS_ACCESS``, :func:`check_access`):

- ``operator`` (the default): the pool operator's key; a valid key of another scope gets
  403, audited like every refusal (``access.denied``);
- ``token``: ``Authorization: Bearer <BILEVEL_METRICS_TOKEN>``, a token of the scraper's
  own that opens nothing else; a wrong token counts as a failed authentication;
- ``private``: no key, but only from loopback and private addresses
  (:data:`PRIVATE_NETWORKS`: RFC 1918, RFC 6598, RFC 4193, link-local); any other address
  gets 403 (logged: without a key there is no team to audit).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SessionDep, bearer_credentials, forbidden, get_principal, refuse_if_throttled
from api.errors import ProblemError
from api.refresh import Reading
from api.settings import ApiSettings
from jobs.status import STATUSES
from jobs.store import repo

__all__ = ["PRIVATE_NETWORKS", "PoolCollector", "check_access", "router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# seconds: from a quick toy job to a day-long one
WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RUN_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def _histogram(name: str, doc: str, h: repo.Histogram) -> HistogramMetricFamily:
    cumulative = [(str(b), float(n)) for b, n in h.buckets]
    cumulative.append(("+Inf", float(h.count)))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=h.total)


class PoolCollector:
    """Collects the pool's metrics from the store when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker[Session], policy: repo.Policy):
        self.sessions, self.policy = sessions, policy

    def collect(self) -> Iterator[Metric]:
        """The metrics, one query each."""
        with self.sessions() as s:
            counts = repo.job_counts(s)
            waits, runs = repo.durations(s, WAIT_BUCKETS, RUN_BUCKETS)
            workers = repo.live_workers(s, self.policy)
            points = repo.trace_point_count(s)
            preemptions = repo.preemption_count(s)
        jobs = GaugeMetricFamily(
            "bilevel_jobs",
            "Jobs by team, queue kind and status",
            labels=["team", "queue", "status"],
        )
        seen = {(t, q, st) for t, q, st, _ in counts}
        for team, queue, status, n in counts:
            jobs.add_metric([team, queue, status], n)
        for team, queue in {(t, q) for t, q, _, _ in counts}:  # every status, 0 included
            for status in STATUSES:
                if (team, queue, status) not in seen:
                    jobs.add_metric([team, queue, status], 0)
        yield jobs
        yield _histogram("bilevel_queue_wait_seconds",
                         "From submission to the first start, of every job that started",
                         waits)  # fmt: skip
        yield _histogram("bilevel_run_seconds",
                         "From the last start to the end, of every finished job",
                         runs)  # fmt: skip
        yield GaugeMetricFamily("bilevel_workers_alive", "Workers seen within one lease",
                                value=len(workers))  # fmt: skip
        yield CounterMetricFamily("bilevel_trace_points_written",
                                  "Trace points held by the store", value=points)  # fmt: skip
        yield CounterMetricFamily("bilevel_preemptions",
                                  "Running jobs sent back to the queue (reason preempted)",
                                  value=preemptions)  # fmt: skip


# loopback, RFC 1918, shared address space (RFC 6598: Kubernetes and carrier NAT), link-local,
# IPv6 unique local: written out, since ipaddress's is_private also admits documentation ranges
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
))  # fmt: skip


def _private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address (a Unix socket, a test client's name)
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in PRIVATE_NETWORKS)


async def check_access(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_credentials)],
) -> None:
    """Let the request read ``/metrics`` under ``metrics_access``, or raise its refusal.

    Raises:
        ProblemError: 404 when metrics are off; 401 without the operator's key or the
            metrics token; 403 for another key (audited) or a public address (``private``).
    """
    settings: ApiSettings = request.app.state.settings
    if not settings.metrics:
        raise ProblemError(404, "metrics are turned off (BILEVEL_METRICS)", slug="not-found")
    if settings.metrics_access == "private":
        address = request.client.host if request.client else ""
        if not _private(address):
            log.warning("GET /metrics from %s refused: not a private address", address)
            raise ProblemError(
                403,
                f"/metrics is open only to loopback and private addresses (metrics_access "
                f"'private'); {address or 'this client'} is not one",
                slug="forbidden",
            )
        return
    if settings.metrics_access == "token":
        address = await refuse_if_throttled(request)
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        given = credentials.credentials if credentials is not None else ""
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            if given:  # a wrong token is a guess, as a wrong key is
                await request.app.state.auth_failures.afailed(address)
            raise ProblemError(
                401, "/metrics needs Authorization: Bearer <metrics token> (metrics_access "
                "'token', BILEVEL_METRICS_TOKEN)", slug="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return
    principal = await get_principal(request, credentials)
    if not principal.operator:
        raise await forbidden(
            request, session, principal,
            f"key {principal.prefix} has scope {principal.scope!r}; /metrics names every team "
            "and needs the pool operator's key (metrics_access 'operator')",
        )  # fmt: skip


@router.get("/metrics", dependencies=[Depends(check_access)])
def metrics(request: Request) -> Response:
    """The pool's metrics in Prometheus's text format."""
    settings = request.app.state.settings
    state = request.app.state  # (check_access answered 404 when metrics are off)
    reading = state.__dict__.setdefault("metrics_reading", Reading("the metrics"))
    policy = repo.Policy.of(settings)

    def read() -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PoolCollector(state.sessions, policy))
        body = generate_latest(registry)
        state.metrics_cache = (time.monotonic(), body)
        return body

    cached = getattr(state, "metrics_cache", None)
    if cached is None:  # the process's first scrape reads the store itself
        return Response(read(), media_type=CONTENT_TYPE_LATEST)
    if time.monotonic() - cached[0] >= settings.metrics_cache_s:
        reading.renew(read)  # stale: this scrape gets the last reading, the next a new one
    return Response(cached[1], media_type=CONTENT_TYPE_LATEST)
