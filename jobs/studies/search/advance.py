"""One step of a search: record the trials that ended, ask for the next, under the lock.

:func:`advance` is idempotent and may be called by anyone at any time: by the API when it
creates the study (its first ``max_concurrent`` members), by a worker when one of its
members ends, and by every worker's reaper pass (so a step lost to a crash between a
member's end and its successor's creation is taken later). It holds the study's row lock
(``SELECT ... FOR UPDATE``) for the whole step, so two callers at once add each trial once;
the trial number is the member's ``position``, part of the members' primary key.

A suggestion whose member the admission refuses (``K`` past ``inner.steps``) is recorded
in the study's ``skipped`` list with its trial number and told to the sampler as failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from jobs.specs.job import JobSpec, field_errors
from jobs.status import TERMINAL, TrialStatus
from jobs.store import repo
from jobs.store.models import Job, Study, StudyMember
from jobs.studies.grid import member_data
from jobs.studies.search.sampling import suggest
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import Trial, objective_values, trial_state
from jobs.studies.search.warm import warm_trials

__all__ = ["Admit", "advance", "budget_left", "record_ends", "trials_of"]

#: admits one member's spec data (the service's ``jobs.specs.admission.admit``, bound)
Admit = Callable[[dict[str, Any]], JobSpec]


def _ended(search: SearchSpec, m: StudyMember, j: Job) -> tuple[str, list[float] | None]:
    """A member's trial state and objectives: as recorded, or from its job if it ended since."""
    if m.trial_state not in (None, TrialStatus.RUNNING) or j.status not in TERMINAL:
        return m.trial_state or TrialStatus.RUNNING, m.objectives
    values = objective_values(j.summary, search.objectives)
    state = trial_state(j.status, values) or TrialStatus.RUNNING
    return state, values if state == TrialStatus.COMPLETE else None


def record_ends(search: SearchSpec, rows: list[tuple[StudyMember, Job]]) -> None:
    """Write each newly ended member's trial state and objectives, once."""
    for m, j in rows:
        m.trial_state, m.objectives = _ended(search, m, j)


def trials_of(study: Study, rows: list[tuple[StudyMember, Job]]) -> list[Trial]:
    """The study's trials: its members, then its refused suggestions (failed).

    A member that ended since the study's last step is read as that step will record it.
    """
    search = SearchSpec.model_validate(study.search)
    out = []
    for m, j in rows:
        state, values = _ended(search, m, j)
        out.append(Trial(number=m.position, params=dict(m.values), state=state,
                         values=list(values) if values is not None else None,
                         sampler_attrs=dict(m.sampler_attrs or {})))  # fmt: skip
    for s in study.skipped:
        if "trial" in s:
            out.append(Trial(number=int(s["trial"]), params=dict(s["values"]),
                             state=TrialStatus.FAIL,
                             sampler_attrs=dict(s.get("sampler_attrs") or {})))  # fmt: skip
    return sorted(out, key=lambda t: t.number)


def budget_left(search: SearchSpec, trials: list[Trial], jobs: list[Job]) -> bool:
    """Whether the search may ask for another trial (its trial count and compute budget)."""
    if search.n_trials is not None and len(trials) >= search.n_trials:
        return False
    b = search.budget
    if b is None:
        return True
    if b.iterations is not None and sum(j.iteration for j in jobs) >= b.iterations:
        return False
    ran = sum(float((j.summary or {}).get("run_s") or 0.0) for j in jobs)
    return b.seconds is None or ran < b.seconds


def advance(
    session: Session, study_id: uuid.UUID, *, admit: Admit, max_attempts: int = 3
) -> list[Job]:
    """Record ended trials and add members up to ``max_concurrent`` while budget is left.

    In the caller's transaction, which holds the study's lock until it commits; the caller
    then sends the jobs returned. When the budget is spent (or the study cancelled) and
    every member has ended, the study is marked done.

    Returns:
        The new members' queued jobs, in trial order.
    """
    study = repo.lock_study(session, study_id)
    if study is None or study.kind != "search" or study.search_done or study.search is None:
        return []
    search = SearchSpec.model_validate(study.search)
    rows = repo.study_members(session, study.id)
    record_ends(search, rows)
    trials = trials_of(study, rows)
    jobs = [j for _, j in rows]
    running = sum(1 for j in jobs if j.status not in TERMINAL)
    new: list[Job] = []
    refused_in_a_row = 0
    swept = set(search.params)
    warm = warm_trials(study.warm_start)
    while (
        not study.cancel_requested
        and running < search.max_concurrent
        and budget_left(search, trials, jobs)
        # a base whose every suggestion is refused must not loop: the corners were admitted
        and refused_in_a_row < 3 * search.max_concurrent
    ):
        number = 1 + max((t.number for t in trials), default=-1)
        sug = suggest(search, trials, number, warm)
        data, values = member_data(study.base, sug.params, swept, study.name)
        data["name"] = f"{study.name} #{number} [{data['name'][len(study.name) + 2 :]}"[:200]
        try:
            spec = admit(data)
        except ValidationError as exc:
            reason = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
            study.skipped = [*study.skipped, {"trial": number, "values": sug.params,
                                              "reason": reason,
                                              "sampler_attrs": sug.sampler_attrs}]  # fmt: skip
            trials.append(
                Trial(number, sug.params, TrialStatus.FAIL, sampler_attrs=sug.sampler_attrs)
            )
            refused_in_a_row += 1
            continue
        refused_in_a_row = 0
        job = repo.add_trial(session, study, number, spec, values, sug.sampler_attrs,
                             max_attempts=max_attempts)  # fmt: skip
        trials.append(Trial(number, sug.params, sampler_attrs=sug.sampler_attrs))
        jobs.append(job)
        new.append(job)
        running += 1
    if running == 0 and not new:
        study.search_done = True
    session.flush()
    return new
