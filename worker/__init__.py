"""Workers: the runner (spec -> core.fit -> store), Celery tasks, the embedded executor.

Only torch-free names are re-exported here: every ``worker.*`` import runs this file, and
torch (through ``worker.runner``) must load only where a job runs, not in ``worker.app``.
"""

from worker.errors import IterationStalled, LeaseLost, StoreUnavailable, TimeLimitExceeded
from worker.outcome import Outcome
from worker.shutdown import request_shutdown

__all__ = [
    "IterationStalled",
    "LeaseLost",
    "Outcome",
    "StoreUnavailable",
    "TimeLimitExceeded",
    "request_shutdown",
]
