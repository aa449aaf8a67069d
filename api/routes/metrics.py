"""``GET /metrics``: the pool in Prometheus's text format, read from the store at each scrape.

The store is the record, so every process (API, workers) counts the same: the figures are
queries, not in-process counters that each API replica would hold apart. Turned off with
``BILEVEL_METRICS=false`` (the response names teams, so expose it only to the scraper).
Each API process answers from its last reading for ``BILEVEL_METRICS_CACHE_S`` (a scrape
interval): replicas and several scrapers do not multiply the store's work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ProblemError
from jobs.status import STATUSES
from jobs.store import repo

__all__ = ["PoolCollector", "router"]

router = APIRouter(include_in_schema=False)

# seconds: from a quick toy job to a day-long one
WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RUN_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def _histogram(
    name: str, doc: str, values: Sequence[float], buckets: Sequence[float]
) -> HistogramMetricFamily:
    cumulative = [(str(float(b)), float(sum(v <= b for v in values))) for b in buckets]
    cumulative.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=float(sum(values)))


class PoolCollector:
    """Collects the pool's metrics from the store when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker[Session], policy: repo.Policy):
        self.sessions, self.policy = sessions, policy

    def collect(self) -> Iterator[Metric]:
        """The metrics, one query each."""
        with self.sessions() as s:
            counts = repo.job_counts(s)
            waits, runs = repo.durations(s)
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
                         waits, WAIT_BUCKETS)  # fmt: skip
        yield _histogram("bilevel_run_seconds",
                         "From the last start to the end, of every finished job",
                         runs, RUN_BUCKETS)  # fmt: skip
        yield GaugeMetricFamily("bilevel_workers_alive", "Workers seen within one lease",
                                value=len(workers))  # fmt: skip
        yield CounterMetricFamily("bilevel_trace_points_written",
                                  "Trace points held by the store", value=points)  # fmt: skip
        yield CounterMetricFamily("bilevel_preemptions",
                                  "Running jobs sent back to the queue (reason preempted)",
                                  value=preemptions)  # fmt: skip


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """The pool's metrics in Prometheus's text format."""
    settings = request.app.state.settings
    if not settings.metrics:
        raise ProblemError(404, "metrics are turned off (BILEVEL_METRICS)", slug="not-found")
    state = request.app.state
    cached = getattr(state, "metrics_cache", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < settings.metrics_cache_s:
        return Response(cached[1], media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(state.sessions, repo.Policy.of(settings)))
    body = generate_latest(registry)
    state.metrics_cache = (now, body)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
