"""A trace poll's JSON body, built by PostgreSQL: the API process decodes no point.

``GET /v1/jobs/{id}/trace`` answers columns (:func:`~jobs.store.repo.trace_reads.trace_columns`
encoded). Read into Python, every point is a row to decode and every value a float object
to make and encode again, all under the API process's GIL: for 3,000 points of five
fields 9.4 ms of the API's CPU (11.3 ms wall), against 0.45 ms (4.5 ms wall) when the
database aggregates the columns into the JSON text itself (2026-12-06, this machine;
600 points: 2.3 against 0.17 ms). Under the load benchmark the trace reads were a fifth of
the API's time holding the GIL, and the polls waiting behind them made the p99.

The body is the same JSON value: ``float8`` prints as its shortest exact decimal (with
``extra_float_digits`` at least 1, PostgreSQL's default since 12; psycopg reads doubles as
that same text, so a lower setting would round the Python path's values alike), and every
number parses back to the stored double. Two spellings differ, not the values: an integral
double prints without ``.0`` and -0.0 as ``-0`` (Python's json reads both as integers). The
other stores, and a compacted trace (answered from its rollups), take the Python path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import cache

from pydantic_core import to_json
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from jobs.store.models import TRACE_FIELDS
from jobs.store.repo.trace_compaction import compaction_of
from jobs.store.repo.trace_reads import (
    TraceRows,
    TraceSpan,
    columns_of,
    compacted_trace,
    trace_columns,
    trace_rows,
)

__all__ = ["trace_json"]


def trace_json(
    session: Session,
    job_id: uuid.UUID,
    *,
    after: int = 0,
    max_points: int | None = None,
    fields: Iterable[str] = TRACE_FIELDS,
    span: tuple[int, int, int] | TraceSpan | None = None,
) -> bytes:
    """:func:`~jobs.store.repo.trace_reads.trace_columns` as a JSON object of columns.

    Non-finite values (which the store keeps as ``NULL``) are ``null``.
    """
    fields = [f for f in fields if f != "iteration"]
    if session.get_bind().dialect.name != "postgresql":
        return _encoded(trace_columns(session, job_id, after=after, max_points=max_points,
                                      fields=fields, span=span))  # fmt: skip
    plan = trace_rows(session, job_id, after=after, max_points=max_points, fields=fields,
                     span=span)  # fmt: skip
    if plan is None or plan.compacted:  # nothing to aggregate: the rollups, or no points
        return _encoded(columns_of(session, job_id, plan, max_points, fields))
    params: dict[str, object] = {"job_id": job_id, "after": after, "last": plan.last}
    if plan.keep is not None:
        params["its"] = plan.keep
    found, body = session.connection().execute(_query(plan), params).one()
    if found == 0 and compaction_of(session, job_id) is not None:  # compacted since the span
        return _encoded(compacted_trace(session, job_id, plan, max_points))
    return str(body).encode()


def _encoded(cols: dict[str, list[object]]) -> bytes:
    # pydantic-core's encoder: json.dumps' bytes for lists of numbers, a tenth of the time
    return to_json(cols, inf_nan_mode="null")


def _query(plan: TraceRows) -> TextClause:
    return _query_for(tuple(plan.fields), plan.keep is not None)


@cache
def _query_for(fields: tuple[str, ...], only_kept: bool) -> TextClause:
    """The points' count and their columns as JSON text."""
    unknown = [f for f in fields if f not in TRACE_FIELDS]
    if unknown:  # the names are written into the statement: only the table's own columns
        raise ValueError(f"unknown trace field(s) {unknown}; known: {', '.join(TRACE_FIELDS)}")
    columns = "".join(
        f", '{f}', coalesce(array_agg({f} ORDER BY iteration), '{{}}')" for f in fields
    )
    which = (
        "iteration = ANY(CAST(:its AS integer[]))"
        if only_kept
        else "iteration > :after AND iteration <= :last"
    )
    return text(
        "SELECT count(*), json_build_object('iteration',"
        f" coalesce(array_agg(iteration ORDER BY iteration), '{{}}'){columns})::text"
        f" FROM trace_points WHERE job_id = :job_id AND {which}"
    )
