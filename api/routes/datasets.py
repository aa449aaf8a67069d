"""``/v1/datasets``: upload a data set file, list, read and delete a team's data sets."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auditor import AuditDep, Auditor
from api.deps import SessionDep, SettingsDep, TeamDep
from api.errors import ProblemError
from api.idempotency import CONFLICT_DOC, IdempotencyKey, conflict, mark_replayed
from api.openapi import BINARY_SCHEMA, auth_responses, links_to, problem_doc
from api.schemas.datasets import DatasetPublic, DatasetsPublic
from api.settings import ApiSettings
from jobs import repo
from jobs.datasets.checks import REQUIRED, DatasetDescription, describe_file
from jobs.datasets.files import DatasetFileError
from jobs.models import Dataset
from jobs.specs.job import TEXT

router = APIRouter(
    prefix="/v1/datasets",
    tags=["datasets"],
    responses={
        **auth_responses(),
        404: problem_doc("no such data set for this team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the file itself: an .npz (numpy.savez) or .safetensors file of named "
        f"arrays; {', '.join(REQUIRED)} at least (see jobs.datasets.checks)",
        "content": {"application/octet-stream": {"schema": BINARY_SCHEMA}},
    }
}


def _dataset_or_404(audit: Auditor, dataset_id: uuid.UUID) -> Dataset:
    row = repo.get_dataset(audit.session, audit.principal.team.id, dataset_id)
    if row is None:
        raise audit.not_found("dataset", Dataset.id, dataset_id)
    return row


def _too_large(limit: int, setting: str, what: str) -> ProblemError:
    return ProblemError(
        413, f"{what} over the limit of {limit} bytes ({setting})",
        slug="storage-quota-exceeded" if setting == "dataset_quota_bytes" else "body-too-large",
        limit=limit, setting=setting,
    )  # fmt: skip


def _upload_limit(
    session: Session, team_id: uuid.UUID, settings: ApiSettings, key: str | None
) -> tuple[int, str]:
    """The tighter of the file limit and what the team's quota has left, with its name.

    A replay (``key`` already used) stores nothing, so only the file limit holds for it.
    """
    if key is not None and repo.find_keyed(session, Dataset, team_id, key) is not None:
        session.rollback()
        return settings.max_upload_bytes, "max_upload_bytes"
    left = settings.dataset_quota_bytes - repo.dataset_bytes_used(session, team_id)
    session.rollback()  # hold no connection while the file streams in (it may take minutes)
    if left < settings.max_upload_bytes:
        return max(left, 0), "dataset_quota_bytes"
    return settings.max_upload_bytes, "max_upload_bytes"


async def _receive(request: Request, f: Any, limit: int, setting: str) -> tuple[str, int]:
    """Stream the body into ``f``, hashing it; 413 as soon as it passes ``limit``."""
    h, size = hashlib.sha256(), 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise _too_large(limit, setting, "the uploaded file is")
        h.update(block)
        f.write(block)
    f.flush()
    return h.hexdigest(), size


def _invalid(exc: DatasetFileError) -> ProblemError:
    field = f"file.{exc.array}" if exc.array else "file"
    return ProblemError(
        422, str(exc), slug="invalid-dataset", title="Invalid data set file", array=exc.array,
        errors=[{"field": field, "loc": field.split("."), "message": str(exc),
                 "type": "invalid_dataset"}],
    )  # fmt: skip


def _store(
    session: Session,
    team_id: uuid.UUID,
    settings: ApiSettings,
    name: str,
    path: Path,
    digest: tuple[str, int],
    desc: DatasetDescription,
    key: str | None,
) -> tuple[Dataset, bool]:
    repo.lock_team(session, team_id)  # concurrent uploads of one team count in turn
    sha256, size = digest
    used = repo.dataset_bytes_used(session, team_id)
    replay = key is not None and repo.find_keyed(session, Dataset, team_id, key)
    # a replay stores nothing, so it is never over quota
    if not replay and used + size > settings.dataset_quota_bytes:
        raise _too_large(
            settings.dataset_quota_bytes, "dataset_quota_bytes",
            f"the team's data sets ({used} bytes) and this file ({size} bytes) are",
        )  # fmt: skip
    with path.open("rb") as f:
        fmt = "npz" if f.read(2) == b"PK" else "safetensors"
    try:
        got = repo.store_dataset(
            session, team_id, name=name, path=path, sha256=sha256, size=size, fmt=fmt,
            description={"task": desc.task, "n_classes": desc.n_classes,
                         "n_features": desc.n_features, "n_tasks": desc.n_tasks,
                         "rows": desc.rows, "arrays": desc.arrays},
            idempotency_key=key,
        )  # fmt: skip
    except repo.IdempotencyConflict as exc:
        raise conflict(exc) from None
    session.commit()
    return got


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    openapi_extra=_UPLOAD_BODY,
    responses={
        201: {
            "links": links_to(
                "/v1/datasets/{dataset_id}",
                "dataset_id",
                "id",
                {"GetDataset": ("", "get"), "DeleteDataset": ("", "delete")},
            )
        },
        409: CONFLICT_DOC,
        413: problem_doc("file over max_upload_bytes, or the team over dataset_quota_bytes"),
        422: problem_doc("the file or one of its arrays is refused; `array` names it"),
    },
)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    team: TeamDep,
    settings: SettingsDep,
    response: Response,
    name: Annotated[
        str, Query(min_length=1, max_length=200, pattern=TEXT, description="the data set's name")
    ],
    idempotency_key: IdempotencyKey = None,
) -> DatasetPublic:
    """Upload an .npz or .safetensors file of named arrays as a new data set."""
    limit, setting = await run_in_threadpool(
        _upload_limit, session, team.id, settings, idempotency_key
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, setting, f"Content-Length {declared} is")
    upload_dir = settings.upload_dir
    if upload_dir is not None:
        upload_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="bilevel-upload-", dir=upload_dir)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            digest = await _receive(request, f, limit, setting)
        if digest[1] == 0:
            raise _invalid(DatasetFileError("the uploaded file is empty"))
        try:
            desc = await run_in_threadpool(describe_file, path)
        except DatasetFileError as exc:
            raise _invalid(exc) from None
        row, created = await run_in_threadpool(
            _store, session, team.id, settings, name, path, digest, desc, idempotency_key
        )
    finally:
        path.unlink(missing_ok=True)
    if not created:
        mark_replayed(response)
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return DatasetPublic.of(row)


@router.get("", response_model=DatasetsPublic)
def list_datasets(session: SessionDep, team: TeamDep, settings: SettingsDep) -> DatasetsPublic:
    """List the team's data sets, newest first, with the storage they use."""
    rows = repo.list_datasets(session, team.id)
    jobs = repo.dataset_jobs(session, team.id) if rows else {}
    return DatasetsPublic(
        data=[DatasetPublic.of(r, jobs=jobs.get(str(r.id))) for r in rows],
        count=len(rows),
        bytes_used=sum(r.size for r in rows),
        quota_bytes=settings.dataset_quota_bytes,
    )


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(
    dataset_id: uuid.UUID, session: SessionDep, team: TeamDep, audit: AuditDep
) -> DatasetPublic:
    """One data set: its arrays and the queued or running jobs that use it."""
    row = _dataset_or_404(audit, dataset_id)
    jobs = repo.dataset_jobs(session, team.id).get(str(dataset_id))
    return DatasetPublic.of(row, repo.jobs_using_dataset(session, team.id, dataset_id), jobs)


@router.delete(
    "/{dataset_id}",
    response_model=DatasetPublic,
    responses={409: problem_doc("a queued or running job uses the data set")},
)
def delete_dataset(
    dataset_id: uuid.UUID, session: SessionDep, team: TeamDep, audit: AuditDep
) -> DatasetPublic:
    """Delete a data set no queued or running job uses; answers what was deleted."""
    repo.lock_team(session, team.id)  # a submit naming it waits, then finds it gone
    row = _dataset_or_404(audit, dataset_id)
    users = repo.jobs_using_dataset(session, team.id, dataset_id)
    if users:
        raise ProblemError(
            409,
            f"dataset {dataset_id} is used by {len(users)} queued or running job(s): "
            f"{', '.join(str(u) for u in users[:5])}; cancel them or wait",
            slug="dataset-in-use",
            jobs=[str(u) for u in users],
        )
    gone = DatasetPublic.of(row, [])
    audit.record("dataset.delete", "dataset", str(dataset_id),
                 before={"name": row.name, "sha256": row.sha256, "size": row.size})  # fmt: skip
    repo.delete_dataset(session, row)
    session.commit()
    return gone
