"""The asynchronous client: the same calls as :class:`client.Client`, awaited.

>>> async with AsyncClient.from_env() as c:        # doctest: +SKIP
...     job = await c.jobs.wait((await c.jobs.submit(spec)).id)
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import client._calls as _calls
from client._inputs import dataset_body, study_frame, wait_text
from client._transport import send_async
from client.arrays import read_npz
from client.base import connection
from client.models import Dataset, Job, JobResult, Study
from client.progress import ProgressBar, progress_bar
from client.settings import DEFAULT_URL
from client.trace import Trace

if TYPE_CHECKING:
    import httpx

    from client._calls import Call

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """The REST API as coroutines; arguments and attributes as :class:`client.Client`'s."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        retries: int = 3,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ):
        import httpx

        self.url, self.retries = url, retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if http is None:
            http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)
        else:
            http.headers.update(headers)
        self.http = http
        self.jobs = AsyncJobsApi(self)
        self.studies = AsyncStudiesApi(self)
        self.datasets = AsyncDatasetsApi(self)

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        state_dir: str | Path | None = None,
        **kw: Any,
    ) -> AsyncClient:
        """A client for the service the environment names (see :meth:`client.Client.from_env`).

        Raises:
            MissingKey: no key anywhere.
        """
        base, key = connection(url, api_key, state_dir)
        return cls(base, key, **kw)

    async def call(self, call: Call[T]) -> T:
        """Send one call (with retries) and parse its answer."""
        return await send_async(self.http, call, self.retries)

    async def get(self, path: str, **params: Any) -> Any:
        """Any other read as JSON."""
        return await self.call(_calls.get_json(path, params or None))

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncJobsApi:
    """``/v1/jobs``, awaited (see :class:`client.sync.JobsApi`)."""

    def __init__(self, client: AsyncClient):
        self._c = client

    async def submit(self, spec: Any, *, idempotency_key: str | None = None) -> Job:
        """Submit a job spec: a dict, a JSON string or a path to a JSON file."""
        return await self._c.call(_calls.submit_job(spec, idempotency_key))

    async def get(self, job_id: Any) -> Job:
        """The job now."""
        return await self._c.call(_calls.get_job(job_id))

    async def list(
        self, status: str | None = None, *, study: Any = None, limit: int = 50
    ) -> builtins.list[Job]:
        """The team's jobs, newest first; only those in ``status`` and of ``study``."""
        if study is not None:
            members = (await self._c.studies.get(study)).members or []
            jobs = await asyncio.gather(*(self.get(m.job_id) for m in members))
            return [j for j in jobs if status is None or j.status == status][:limit]
        return (await self._c.call(_calls.list_jobs(status, limit, None))).data

    async def cancel(self, job_id: Any) -> Job:
        """Ask the job to stop."""
        return await self._c.call(_calls.cancel_job(job_id))

    async def wait(
        self,
        job_id: Any,
        *,
        progress: bool = True,
        interval: float = 1.0,
        timeout: float | None = None,
        on_poll: Callable[[Job], None] | None = None,
    ) -> Job:
        """The job once it has ended, with a progress bar meanwhile."""
        job = await self.get(job_id)
        bar = progress_bar(job.progress.iterations, f"job {job.name}", enabled=progress)
        start = time.monotonic()
        try:
            while True:
                bar.show(job.progress.iteration, wait_text(job))
                if on_poll is not None:
                    on_poll(job)
                if job.done:
                    return job
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
                await asyncio.sleep(interval)
                job = await self.get(job_id)
        finally:
            bar.close()

    async def trace(
        self,
        job_id: Any,
        fields: builtins.list[str] | None = None,
        *,
        max_points: int | None = None,
        after: int = 0,
    ) -> Trace:
        """The job's trace."""
        return await self._c.call(_calls.job_trace(job_id, fields, max_points, after))

    async def result(self, job_id: Any) -> JobResult:
        """The final metrics and hyperparameters of a succeeded job."""
        return await self._c.call(_calls.job_result(job_id))

    async def hparams_bytes(self, job_id: Any) -> bytes:
        """The learned hyperparameters as an ``.npz`` file."""
        return await self._c.call(_calls.job_hparams(job_id))

    async def hparams(self, job_id: Any) -> dict[str, Any]:
        """The learned hyperparameters as numpy arrays by name."""
        return read_npz(await self.hparams_bytes(job_id))


class AsyncStudiesApi:
    """``/v1/studies``, awaited (see :class:`client.sync.StudiesApi`)."""

    def __init__(self, client: AsyncClient):
        self._c = client

    async def submit(self, study: Any, *, idempotency_key: str | None = None) -> Study:
        """Submit a study."""
        return await self._c.call(_calls.submit_study(study, idempotency_key))

    async def around(
        self, job_id: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> Study:
        """A search study around a job (see :meth:`client.sync.StudiesApi.around`)."""
        return await self._c.call(_calls.search_around(job_id, options, idempotency_key))

    async def get(self, study_id: Any) -> Study:
        """The study with its members and aggregate table."""
        return await self._c.call(_calls.get_study(study_id))

    async def list(self, *, limit: int = 50) -> builtins.list[Study]:
        """The team's studies, newest first."""
        return (await self._c.call(_calls.list_studies(limit))).data

    async def cancel(self, study_id: Any) -> Study:
        """Cancel every member still queued or running."""
        return await self._c.call(_calls.cancel_study(study_id))

    async def wait(
        self,
        study_id: Any,
        *,
        progress: bool = True,
        interval: float = 1.0,
        on_poll: Callable[[Study], None] | None = None,
    ) -> Study:
        """The study once every member has ended, with a bar over its members meanwhile."""
        study = await self.get(study_id)
        bar = progress_bar(study.progress.members, f"study {study.name}", enabled=progress)
        try:
            while True:
                running = study.progress.by_status.get("running", 0)
                bar.show(study.progress.finished, f"{study.status} ({running} running)")
                if on_poll is not None:
                    on_poll(study)
                if study.done:
                    return study
                await asyncio.sleep(interval)
                study = await self.get(study_id)
        finally:
            bar.close()

    async def table(self, study_id: Any) -> Any:
        """The aggregate table as a ``pandas.DataFrame``."""
        return study_frame(await self.get(study_id))


class AsyncDatasetsApi:
    """``/v1/datasets``, awaited (see :class:`client.sync.DatasetsApi`)."""

    def __init__(self, client: AsyncClient):
        self._c = client

    async def upload(
        self,
        source: Any,
        *,
        name: str | None = None,
        target: str | None = None,
        val: float = 0.2,
        test: float = 0.0,
        seed: int = 0,
        progress: bool | ProgressBar = True,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Upload a data set from a file, a mapping of arrays or a DataFrame."""
        body = dataset_body(source, name, {"target": target, "val": val, "test": test,
                                           "seed": seed})  # fmt: skip
        body.with_bar(progress)
        try:
            return await self._c.call(
                _calls.upload_dataset(body.name, body.stream, body.size, idempotency_key)
            )
        finally:
            if body.bar is not None:
                body.bar.close()

    async def get(self, dataset_id: Any) -> Dataset:
        """The data set, with the jobs that use it."""
        return await self._c.call(_calls.get_dataset(dataset_id))

    async def list(self) -> builtins.list[Dataset]:
        """The team's data sets."""
        return (await self._c.call(_calls.list_datasets())).data

    async def delete(self, dataset_id: Any) -> Dataset:
        """Delete a data set that no queued or running job uses."""
        return await self._c.call(_calls.delete_dataset(dataset_id))
