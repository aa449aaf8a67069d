"""The synchronous client: ``Client(url, api_key)`` or ``Client.from_env()``.

>>> from client import Client
>>> with Client.from_env() as c:                      # doctest: +SKIP
...     job = c.jobs.submit({"name": "toy", ...})
...     job = c.jobs.wait(job.id)                      # a progress bar until it ends
...     c.jobs.trace(job.id).to_pandas().outer_loss.plot()
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import client._calls as _calls
from client._inputs import dataset_body, study_frame, wait_text
from client._transport import send
from client.arrays import read_npz
from client.base import connection
from client.models import Dataset, Job, JobResult, Study
from client.progress import ProgressBar, progress_bar
from client.settings import DEFAULT_URL
from client.trace import Trace

if TYPE_CHECKING:
    import httpx

    from client._calls import Call

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """The REST API of a bilevel service, as Python calls.

    Args:
        url: the service's base URL.
        api_key: the team's API key (``Authorization: Bearer``).
        retries: how many times a call is sent again after a connection error (see
            :mod:`client._transport`); creates carry an ``Idempotency-Key`` so a retry never
            makes a second job.
        timeout: seconds to wait for an answer (an upload's read waits longer).
        http: an ``httpx.Client`` to use instead of a new one (tests pass one on an app).

    Attributes:
        jobs: submit, read, wait on and cancel jobs (:class:`JobsApi`).
        studies: grids of jobs (:class:`StudiesApi`).
        datasets: upload, list and delete data sets (:class:`DatasetsApi`).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        retries: int = 3,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ):
        import httpx

        self.url, self.retries = url, retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if http is None:
            http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        else:
            http.headers.update(headers)
        self.http = http
        self.jobs = JobsApi(self)
        self.studies = StudiesApi(self)
        self.datasets = DatasetsApi(self)

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        state_dir: str | Path | None = None,
        **kw: Any,
    ) -> Client:
        """A client for the service the environment names.

        The URL is ``url``, else ``BILEVEL_URL``, else ``http://127.0.0.1:8000``; the key is
        ``api_key``, else ``BILEVEL_API_KEY``, else the key ``bilevel serve`` wrote to
        ``<state_dir>/api_key`` (``state_dir``, else ``BILEVEL_STATE_DIR``, else
        ``~/.local/share/bilevel``).

        Raises:
            MissingKey: no key anywhere.
        """
        base, key = connection(url, api_key, state_dir)
        return cls(base, key, **kw)

    def call(self, call: Call[T]) -> T:
        """Send one :class:`~client._calls.Call` (with retries) and parse its answer."""
        return send(self.http, call, self.retries)

    def get(self, path: str, **params: Any) -> Any:
        """Any other read as JSON (``c.get("/v1/pool")``)."""
        return self.call(_calls.get_json(path, params or None))

    def post(self, path: str, body: Any = None) -> Any:
        """Any other write as JSON (``c.post("/v1/webhooks", {"url": ...})``).

        It is not resent after a failure midway: the server may have acted on it.
        """
        return self.call(_calls.send_json("POST", path, body))

    def delete(self, path: str) -> Any:
        """Any other delete; its JSON answer, if any."""
        return self.call(_calls.send_json("DELETE", path, None))

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobsApi:
    """``/v1/jobs``: one job is one bilevel problem solved by hypergradient descent."""

    def __init__(self, client: Client):
        self._c = client

    def submit(self, spec: Any, *, idempotency_key: str | None = None) -> Job:
        """Submit a job spec: a dict, a JSON string or a path to a JSON file.

        Raises:
            ApiError: 422 with the invalid fields, 429 over the team's quota.
        """
        return self._c.call(_calls.submit_job(spec, idempotency_key))

    def get(self, job_id: Any) -> Job:
        """The job now."""
        return self._c.call(_calls.get_job(job_id))

    def list(
        self, status: str | None = None, *, study: Any = None, limit: int = 50
    ) -> builtins.list[Job]:
        """The team's jobs, newest first; only those in ``status`` and of ``study``."""
        if study is not None:
            members = self._c.studies.get(study).members or []
            jobs = [self.get(m.job_id) for m in members]
            return [j for j in jobs if status is None or j.status == status][:limit]
        return self._c.call(_calls.list_jobs(status, limit, None)).data

    def cancel(self, job_id: Any) -> Job:
        """Ask the job to stop: a queued one ends at once, a running one at its next step."""
        return self._c.call(_calls.cancel_job(job_id))

    def wait(
        self,
        job_id: Any,
        *,
        progress: bool = True,
        interval: float = 1.0,
        timeout: float | None = None,
        on_poll: Callable[[Job], None] | None = None,
    ) -> Job:
        """The job once it has ended, with a progress bar over its iterations meanwhile.

        Args:
            job_id: the job.
            progress: draw the bar (tqdm's widget in a notebook, a line on a terminal).
            interval: seconds between polls.
            timeout: give up after this many seconds (``TimeoutError``).
            on_poll: called with the job after each poll (a bar of the caller's own).
        """
        job = self.get(job_id)
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
                time.sleep(interval)
                job = self.get(job_id)
        finally:
            bar.close()

    def trace(
        self,
        job_id: Any,
        fields: builtins.list[str] | None = None,
        *,
        max_points: int | None = None,
        after: int = 0,
    ) -> Trace:
        """The job's trace (``.to_pandas()``, ``.to_numpy()``).

        Args:
            job_id: the job.
            fields: the columns (``outer_loss``, ``grad_norm``, ...); all by default.
            max_points: the server downsamples to this many points (its default when
                ``None``), keeping the extremes.
            after: only iterations after this one.
        """
        return self._c.call(_calls.job_trace(job_id, fields, max_points, after))

    def result(self, job_id: Any) -> JobResult:
        """The final metrics and hyperparameters of a succeeded job (409 before)."""
        return self._c.call(_calls.job_result(job_id))

    def hparams_bytes(self, job_id: Any) -> bytes:
        """The learned hyperparameters as the ``.npz`` file the server keeps."""
        return self._c.call(_calls.job_hparams(job_id))

    def hparams(self, job_id: Any) -> dict[str, Any]:
        """The learned hyperparameters as numpy arrays by name.

        A single tensor is named ``"hparams"``; a problem with several names each (such as
        ``log_decay``). Needs numpy (``pip install 'bilevel[client]'``).
        """
        return read_npz(self.hparams_bytes(job_id))


class StudiesApi:
    """``/v1/studies``: a base spec swept over a grid, as one object with a table."""

    def __init__(self, client: Client):
        self._c = client

    def submit(self, study: Any, *, idempotency_key: str | None = None) -> Study:
        """Submit a study (``{"name", "base", "grid", "group_by"}``; dict, JSON or path)."""
        return self._c.call(_calls.submit_study(study, idempotency_key))

    def around(self, job_id: Any, *, idempotency_key: str | None = None, **options: Any) -> Study:
        """A search study around a job's outer lr, K and inner steps, warm-started by it.

        ``options``: ``n_trials``, ``max_concurrent``, ``sampler``, ``pruner``, ``seed``,
        ``name`` (``POST /v1/jobs/{id}/search-around``).
        """
        return self._c.call(_calls.search_around(job_id, options, idempotency_key))

    def get(self, study_id: Any) -> Study:
        """The study with its members and aggregate table."""
        return self._c.call(_calls.get_study(study_id))

    def list(self, *, limit: int = 50) -> builtins.list[Study]:
        """The team's studies, newest first."""
        return self._c.call(_calls.list_studies(limit)).data

    def cancel(self, study_id: Any) -> Study:
        """Cancel every member still queued or running."""
        return self._c.call(_calls.cancel_study(study_id))

    def wait(
        self,
        study_id: Any,
        *,
        progress: bool = True,
        interval: float = 1.0,
        on_poll: Callable[[Study], None] | None = None,
    ) -> Study:
        """The study once every member has ended, with a bar over its members meanwhile."""
        study = self.get(study_id)
        bar = progress_bar(study.progress.members, f"study {study.name}", enabled=progress)
        try:
            while True:
                running = study.progress.by_status.get("running", 0)
                bar.show(study.progress.finished, f"{study.status} ({running} running)")
                if on_poll is not None:
                    on_poll(study)
                if study.done:
                    return study
                time.sleep(interval)
                study = self.get(study_id)
        finally:
            bar.close()

    def table(self, study_id: Any) -> Any:
        """The aggregate table as a ``pandas.DataFrame``.

        One row per setting of the study's ``group_by`` paths; per metric its mean (column
        ``<metric>``) and standard deviation (``<metric>_std``) over the succeeded members.
        """
        return study_frame(self.get(study_id))


class DatasetsApi:
    """``/v1/datasets``: a team's uploaded data sets."""

    def __init__(self, client: Client):
        self._c = client

    def upload(
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
        """Upload a data set from a file, a mapping of arrays or a DataFrame.

        Args:
            source: an ``.npz`` / ``.safetensors`` path, arrays by name (``x_train``,
                ``y_train``, ``x_val``, ``y_val``, optional ``x_test``, ``y_test``), or a
                ``pandas.DataFrame`` split into those by ``target``, ``val``, ``test``, ``seed``.
            name: the data set's name (default: the file's stem, else ``"dataset"``).
            target: a DataFrame's column to predict.
            val: a DataFrame's fraction of rows for the validation split.
            test: a DataFrame's fraction of rows for the test split.
            seed: the seed of a DataFrame's shuffle.
            idempotency_key: the create's key (a new one by default); the server answers a
                second upload with the same key with the first data set.
            progress: a bar over the bytes sent (``True``: a new one; or a bar of the
                caller's).

        Raises:
            ApiError: 422 naming the array that is wrong, 413 over the size limit.
        """
        body = dataset_body(source, name, {"target": target, "val": val, "test": test,
                                           "seed": seed})  # fmt: skip
        body.with_bar(progress)
        try:
            return self._c.call(
                _calls.upload_dataset(body.name, body.stream, body.size, idempotency_key)
            )
        finally:
            if body.bar is not None:
                body.bar.close()

    def get(self, dataset_id: Any) -> Dataset:
        """The data set, with the jobs that use it."""
        return self._c.call(_calls.get_dataset(dataset_id))

    def list(self) -> builtins.list[Dataset]:
        """The team's data sets."""
        return self._c.call(_calls.list_datasets()).data

    def delete(self, dataset_id: Any) -> Dataset:
        """Delete a data set that no queued or running job uses (409 otherwise)."""
        return self._c.call(_calls.delete_dataset(dataset_id))
