"""The team's quota on its jobs: the check a submit and a study make, and the one 429.

``max_queued_jobs`` bounds the jobs a team has waiting, ``max_running_jobs`` those it runs
(the workers also hold the latter when they claim). Both refusals are the same problem,
``/problems/quota-exceeded`` with the limit, the team's count and ``Retry-After``, built by
:func:`quota_exceeded` alone.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from api.errors import ProblemError
from api.settings import ApiSettings
from jobs import repo
from jobs.status import JobStatus

__all__ = ["check_quota", "quota_exceeded"]


def quota_exceeded(detail: str, *, limit: int, current: int, retry_after_s: int) -> ProblemError:
    """The 429 ``quota-exceeded`` problem.

    Args:
        detail: what passes which limit, naming its setting.
        limit: the limit's value.
        current: the team's count against it.
        retry_after_s: the ``Retry-After`` (``quota_retry_after_s``).

    Returns:
        The problem, to raise.
    """
    return ProblemError(
        429,
        f"{detail}; retry when some have finished",
        slug="quota-exceeded",
        title="Quota exceeded",
        headers={"Retry-After": str(retry_after_s)},
        limit=limit,
        current=current,
    )


def check_quota(
    session: Session, team_id: uuid.UUID, settings: ApiSettings, *, study: int | None = None
) -> None:
    """Refuse (429) new jobs the team's quota has no room for.

    A submit (``study`` None) adds one job: refused when the team is at its queued or its
    running limit. A study adds ``study`` queued jobs at once: refused when they would pass
    the queued limit. Takes the team's lock first, so concurrent creates count in turn.

    Raises:
        ProblemError: :func:`quota_exceeded`.
    """
    repo.lock_team(session, team_id)
    counts = repo.count_active_jobs(session, team_id)
    retry = settings.quota_retry_after_s
    if study is not None:
        queued, limit = counts[JobStatus.QUEUED], settings.max_queued_jobs
        if queued + study > limit:
            raise quota_exceeded(
                f"the study's {study} jobs and the team's {queued} queued jobs pass its limit "
                f"of {limit} queued jobs (max_queued_jobs)",
                limit=limit, current=queued, retry_after_s=retry,
            )  # fmt: skip
        return
    for status, limit, name in (
        (JobStatus.QUEUED, settings.max_queued_jobs, "max_queued_jobs"),
        (JobStatus.RUNNING, settings.max_running_jobs, "max_running_jobs"),
    ):
        if counts[status] >= limit:
            raise quota_exceeded(
                f"the team has {counts[status]} {status} jobs, at its limit of {limit} ({name})",
                limit=limit, current=counts[status], retry_after_s=retry,
            )  # fmt: skip
