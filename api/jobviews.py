"""A job's JSON body and ETag, made once per version of its row in each API process.

``GET /v1/jobs/{id}`` is the dashboard's poll: every open tab asks about twice a second and
almost every answer is a 304. Its ETag hashes the representation itself (a heartbeat may
change only the summary, which no timestamp follows), so answering it used to mean building
the pydantic model and its JSON on every poll. :class:`JobViews` keeps, per job, the row the
body was made from (``jobs.store.repo.job_view_row``: every column the view shows, the JSON
ones as their stored text) with the body and its tag: a poll whose row equals the kept one
gets the same body and tag without building anything, so the tag is exactly the one the
body would hash to. A changed row (any column, any byte of a JSON text) makes them anew.
Floats are compared by their bits (``float.hex``): ``-0.0 == 0.0`` but they print apart.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Row

from api.schemas.jobs import JobPublic
from jobs.store import repo

__all__ = ["JobViews", "weak_etag"]


def weak_etag(data: bytes) -> str:
    """The weak ETag of a body: 128 bits of its SHA-256."""
    return f'W/"{hashlib.sha256(data).hexdigest()[:32]}"'


def _fingerprint(row: Row[Any]) -> tuple[Any, ...]:
    return tuple(v.hex() if isinstance(v, float) else v for v in row)


class JobViews:
    """Bodies and ETags of the last ``max_entries`` jobs polled, least recently used out.

    Thread-safe: the routes run in the thread pool.
    """

    def __init__(self, max_entries: int = 4096):
        if max_entries < 1:
            raise ValueError(f"need max_entries >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, tuple[tuple[Any, ...], str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # bodies made (the rest were reused): what the tests count

    def view(self, row: Row[Any]) -> tuple[str, bytes]:
        """``(ETag, JSON body)`` of the job in ``row`` (``jobs.store.repo.job_view_row``)."""
        key, fingerprint = row.id, _fingerprint(row)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == fingerprint:
                self._entries.move_to_end(key)
                return entry[1], entry[2]
        body = JobPublic.of(repo.job_of_view_row(row)).model_dump_json().encode()
        etag = weak_etag(body)
        with self._lock:
            self.built += 1
            self._entries[key] = (fingerprint, etag, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return etag, body

    def __len__(self) -> int:
        return len(self._entries)
