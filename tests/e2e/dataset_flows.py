"""The data set acceptance flow, shared by the distributed and the embedded integration tests:
upload scikit-learn's digits over REST, train a feature_regularization and an mlp job on it."""

from __future__ import annotations

import copy
import io
import math
import random

import numpy as np

from tests.dataset_files import digits_arrays, npz_bytes
from tests.e2e.flows import TERMINAL, wait_for
from tests.factories import example


def job_specs(dataset_id: str) -> dict[str, dict]:
    """Small jobs of both families on the data set: seconds each on one CPU thread."""
    fr = copy.deepcopy(example("feature_regularization"))
    fr["problem"].update(dataset=dataset_id, model="softmax", init_penalty=0.01)
    fr["inner"].update(steps=30, lr=0.5)
    fr["hypergradient"] = {"method": "truncated", "K": 10}
    fr["outer"].update(iterations=15, lr=0.3)
    fr["diagnostics"]["every"] = 5
    mlp = copy.deepcopy(example("mlp"))
    mlp["problem"].update(dataset=dataset_id, hidden=[16])
    mlp["inner"].update(steps=20, batch_size=128, learn_lr=True)
    mlp["hypergradient"] = {"method": "truncated", "K": 5}
    mlp["outer"].update(iterations=12, lr=0.1)
    mlp["diagnostics"]["every"] = 0
    return {"feature_regularization": fr, "mlp": mlp}


def upload_train_and_download(client, auth, other_auth) -> str:
    data = npz_bytes(digits_arrays(seed=random.randrange(1 << 30)))
    r = client.post("/v1/datasets", params={"name": "digits"}, content=data,
                    headers={**auth, "Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]

    specs = job_specs(dataset_id)
    ids = {}
    for kind, spec in specs.items():
        r = client.post("/v1/jobs", json=spec, headers=auth)
        assert r.status_code == 201, r.text
        ids[kind] = r.json()["id"]
    # the data set is in use: it cannot be deleted under the queued jobs
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=auth).status_code == 409

    caches = []
    for kind, job_id in ids.items():
        job, _ = wait_for(client, job_id, auth, lambda j: j["status"] in TERMINAL, timeout=240)
        assert job["status"] == "succeeded", job
        trace = client.get(f"/v1/jobs/{job_id}/trace", headers=auth).json()
        assert trace["outer_loss"][-1] < trace["outer_loss"][0], (kind, trace["outer_loss"])
        metrics = job["summary"]["metrics"]
        assert {"train_acc", "val_acc", "test_acc", "val_loss"} <= set(metrics)
        caches.append(job["summary"]["dataset_cache"])
        r = client.get(f"/v1/jobs/{job_id}/hparams", headers=auth)
        with np.load(io.BytesIO(r.content)) as z:
            learned = dict(z)
        if kind == "feature_regularization":
            start = math.log(specs[kind]["problem"]["init_penalty"])
            assert learned["feature_penalties"].shape == (64,)
            assert not np.allclose(learned["feature_penalties"], start)
        else:
            start = math.log(specs[kind]["problem"]["init_decay"])
            assert learned["layer_decay"].shape == (2,) and "log_lr" in learned
            assert not np.allclose(learned["layer_decay"], start)
    # one worker: the first job fetched the file, the second found it in the cache
    assert sorted(caches) == ["hit", "miss"]

    assert client.get(f"/v1/datasets/{dataset_id}", headers=other_auth).status_code == 404
    r = client.post("/v1/jobs", json=specs["mlp"], headers=other_auth)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["problem.dataset"]
    return dataset_id
