"""A Python client for the bilevel service: jobs, studies and data sets as typed objects.

    from client import Client
    c = Client.from_env()                       # BILEVEL_URL, BILEVEL_API_KEY or the state dir
    job = c.jobs.wait(c.jobs.submit("examples/toy.json").id)
    c.jobs.trace(job.id).to_pandas()            # needs pandas: pip install 'bilevel[client]'

:class:`Client` is synchronous, :class:`AsyncClient` the same calls as coroutines. Both send
each call again on a connection error; creates carry an ``Idempotency-Key`` so a retry never
makes a second object. The HTTP side needs only httpx and pydantic; numpy, pandas and tqdm
(the ``client`` extra) come in for arrays, tables and progress bars. Nothing here imports
the server, SQLAlchemy or torch.
"""

from __future__ import annotations

from client.aio import AsyncClient
from client.errors import ApiError, ClientError, FieldError, MissingKey, ServiceUnreachable
from client.models import (
    Dataset,
    Datasets,
    Job,
    JobError,
    JobResult,
    Jobs,
    Progress,
    Studies,
    Study,
    StudyMember,
    StudyRow,
)
from client.settings import ClientSettings
from client.sync import Client
from client.trace import Trace

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "ClientSettings",
    "Dataset",
    "Datasets",
    "FieldError",
    "Job",
    "JobError",
    "JobResult",
    "Jobs",
    "MissingKey",
    "Progress",
    "ServiceUnreachable",
    "Studies",
    "Study",
    "StudyMember",
    "StudyRow",
    "Trace",
]
