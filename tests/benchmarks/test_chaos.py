"""The chaos soak's short version (``benchmarks.service.chaos --ci``): every fault kind under load,
and afterwards nothing lost, doubled, half-written or left running."""

from __future__ import annotations

import json

import pytest

from tests.conftest import unavailable
from tests.faults.services import postgres_missing, redis_missing


@pytest.mark.integration
def test_the_short_chaos_soak_injects_every_fault_kind_and_loses_nothing(tmp_path):
    for what, why in (("PostgreSQL binaries", postgres_missing()),
                      ("Redis binaries", redis_missing())):  # fmt: skip
        if why:
            unavailable(what, why)
    from benchmarks.service import chaos

    out = tmp_path / "chaos.json"
    rc = chaos.main(["--ci", "--out", str(out)])
    report = json.loads(out.read_text())
    violations = {k: c["violations"] for k, c in report["checks"].items() if c["violations"]}
    assert (rc, violations) == (0, {}), report["fault_log"]
    injected = {k: f["injected"] for k, f in report["faults"].items()}
    # every kind the soak knows, the restart during an upload standing for PostgreSQL's
    assert all(n >= 1 for k, n in injected.items() if k != "pg_restart"), injected
    # the upload PostgreSQL restarted under came through on a retry, whole (the checks)
    upload = next(e for e in report["fault_log"] if e["kind"] == "pg_restart_upload")
    assert upload["detail"].endswith("then stored on retry"), upload
    checked = {k: c["checked"] for k, c in report["checks"].items()}
    # the checks looked at something: jobs, trace points, traces read, a reference, a blob
    # (the fair-share check needs 20 samples with both teams backlogged: a short run may
    # have fewer, and then reports its figures without checking)
    assert all(n > 0 for k, n in checked.items()
               if not k.startswith(("no lease", "fair shares"))), checked  # fmt: skip
    assert report["activity"]["jobs_by_status"] == {
        "succeeded": report["checks"]["every job ended, and succeeded"]["checked"]
    }
