"""The test suite's helpers that code outside ``tests/`` may use: the service benchmarks.

One door, so the benchmarks depend on this module's names, not on where the suite keeps
them (factories, the servers and workers the end-to-end and fault tests start, reference
runs). Importing it sets what ``tests.conftest`` sets for every process the tests start: the
key secret API keys are hashed under, and no per-key rate limit.
"""

from __future__ import annotations

from tests.conftest import KEY_SECRET, PG_ADMIN_URL, REDIS_URL
from tests.dataset_files import digits_arrays
from tests.e2e.dataset_flows import job_specs
from tests.e2e.workers import ROOT, CeleryWorker
from tests.factories import (
    EXAMPLES,
    example,
    free_port,
    small_one_shot,
    team_with_key,
    tiny_spec,
    wait_ready,
)
from tests.faults.reference import reference, reference_arrays
from tests.faults.services import Api, PostgresServer, RedisServer
from tests.webhook_receiver import Receiver

__all__ = [
    "EXAMPLES",
    "KEY_SECRET",
    "PG_ADMIN_URL",
    "REDIS_URL",
    "ROOT",
    "Api",
    "CeleryWorker",
    "PostgresServer",
    "Receiver",
    "RedisServer",
    "digits_arrays",
    "example",
    "free_port",
    "job_specs",
    "reference",
    "reference_arrays",
    "small_one_shot",
    "team_with_key",
    "tiny_spec",
    "wait_ready",
]
