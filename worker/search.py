"""The worker's side of search studies: ask for the next members when one ends.

After a job of this worker stops, its study (if a search) takes a step
(:func:`jobs.studies.search.advance.advance`): the trial is recorded and the sampler asked for the
next one, in one transaction holding the study's lock; the new jobs are sent after the
commit. The reaper's pass steps every search that may still add members, so a step lost to
a crash (between a member's end and this call) or to a member cancelled while queued is
taken at the next pass; a step finds nothing to do when there is nothing to do.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from jobs.specs.admission import admit
from jobs.specs.job import JobSpec
from jobs.store import repo
from jobs.studies.search.advance import advance

__all__ = ["advance_after", "advance_all"]

log = logging.getLogger(__name__)

#: sends a job to a worker of its queue kind
Send = Callable[[uuid.UUID, str], None]


def _step(sessions: sessionmaker[Session], study_id: uuid.UUID, max_attempts: int) -> list[Any]:
    with sessions.begin() as s:
        study = repo.get_study_any(s, study_id)
        if study is None:
            return []
        datasets = repo.dataset_lookup(s, study.team_id)

        def admitted(data: dict[str, Any]) -> JobSpec:  # the worker's admission (no budget)
            return admit(data, datasets=datasets)

        jobs = advance(s, study_id, admit=admitted, max_attempts=max_attempts)
        return [(j.id, j.queue) for j in jobs]


def advance_after(
    sessions: sessionmaker[Session], job_id: uuid.UUID, send: Send, max_attempts: int = 3
) -> int:
    """Step the search ``job_id`` is a member of (if any); send its new members."""
    with sessions() as s:
        study = repo.study_of_job(s, job_id)
        study_id = study.id if study is not None else None
    if study_id is None:
        return 0
    return _send_all(_step(sessions, study_id, max_attempts), send)


def advance_all(sessions: sessionmaker[Session], send: Send, max_attempts: int = 3) -> int:
    """Step every search that may still add members; send their new members."""
    with sessions() as s:
        ids = repo.active_searches(s)
    n = 0
    for study_id in ids:
        try:
            n += _send_all(_step(sessions, study_id, max_attempts), send)
        except Exception:  # one study's trouble does not hold the others
            log.warning("search study %s could not take a step", study_id, exc_info=True)
    return n


def _send_all(jobs: list[tuple[uuid.UUID, str]], send: Send) -> int:
    for job_id, queue in jobs:
        try:
            send(job_id, queue)
        except Exception:  # the reaper resends stale queued jobs
            log.warning("could not send search member %s", job_id, exc_info=True)
    return len(jobs)
