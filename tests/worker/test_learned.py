"""The ``learned`` artifact: what a job's hparams mean, against the .npz and the problem."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes

from jobs.specs.job import parse_spec
from jobs.store import repo
from tests.factories import example, queued_job
from worker.build import build
from worker.learned import BINS, HparamsPath
from worker.runner import execute_job
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, lease_s=30)


def _small(kind: str, iterations: int = 6, **inner) -> dict:
    spec = copy.deepcopy(example(kind))
    spec["inner"].update(steps=10, **inner)
    spec["hypergradient"] = {"method": "truncated", "K": 3}
    spec["outer"]["iterations"] = iterations
    spec["diagnostics"]["every"] = 0
    spec["device"] = "cpu"
    return spec


def _run(sessions, spec) -> tuple[dict, dict[str, np.ndarray]]:
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    with sessions() as s:
        assert repo.get_job(s, None, job_id).summary["learned"] is True
        learned = repo.load_artifact(s, job_id, "learned")
        npz = repo.load_artifact(s, job_id, "hparams").data
    assert learned.media_type == "application/json"
    with np.load(io.BytesIO(npz)) as z:
        return json.loads(learned.data), {k: z[k] for k in z.files}


def test_penalties_are_exp_of_the_npz_sorted_with_the_tables_feature_names(sessions):
    learned, hp = _run(sessions, _small("feature_regularization"))
    pen = np.exp(hp["feature_penalties"].astype(np.float64))
    order = np.argsort(-pen, kind="stable")
    names = load_diabetes().feature_names
    got = learned["penalties"]
    assert got["values"] == pytest.approx(pen[order].tolist(), rel=1e-12)
    assert got["labels"] == [names[i] for i in order] and got["named"] and got["per"] == "feature"
    # the path ends at the returned hparams, one series per feature, by name
    (path,) = learned["paths"]
    assert path["iteration"][-1] == 6 and path["log"]
    assert [path["series"][n][-1] for n in names] == pytest.approx(pen.tolist(), rel=1e-12)


def test_example_weights_are_a_histogram_split_by_the_problems_corrupted_labels(sessions):
    spec = _small("hypercleaning")
    spec["problem"].update(n_train=200, n_val=100)
    learned, hp = _run(sessions, spec)
    w = 1 / (1 + np.exp(-hp["hparams"].astype(np.float64)))
    corrupted = build(parse_spec(spec)).problem.corrupted.numpy()
    hist = learned["example_weights"]
    edges = np.linspace(0, 1, BINS + 1)
    assert hist["all"] == np.histogram(w, edges)[0].tolist() and hist["count"] == 200
    assert hist["corrupted"] == np.histogram(w[corrupted], edges)[0].tolist()
    assert np.add(hist["clean"], hist["corrupted"]).tolist() == hist["all"]
    assert hist["clean_mean"] == pytest.approx(w[~corrupted].mean(), rel=1e-9)
    assert "paths" not in learned  # 200 weights: too many to follow


def test_layer_decays_and_the_learned_step_size_are_in_their_own_units(sessions):
    spec = _small("mlp", learn_lr=True)
    spec["problem"]["hidden"] = [8]
    learned, hp = _run(sessions, spec)
    assert learned["layer_decays"]["values"] == pytest.approx(
        np.exp(hp["layer_decay"].astype(np.float64)).tolist(), rel=1e-12
    )
    assert learned["step_size"] == pytest.approx(
        0.3 * np.exp(float(hp["log_lr"].reshape(-1)[0])), rel=1e-12
    )
    paths = {p["key"]: p for p in learned["paths"]}
    assert paths["log_lr"]["series"]["step size"][-1] == pytest.approx(learned["step_size"])
    assert list(paths["layer_decay"]["series"]) == ["layer 1", "layer 2"]


def test_a_path_keeps_at_most_its_points_evenly_thinned():
    path = HparamsPath(points=8)
    for it in range(1, 101):
        path.add(it, {"a": torch.tensor([float(it)]), "b": torch.tensor(2.0 * it)})
    assert len(path.iteration) <= 8 and path.stride == 16
    assert path.iteration == list(range(16, 101, 16))
    assert path.values["b"] == [[2.0 * i] for i in path.iteration]
    big = HparamsPath(max_values=3)
    big.add(1, {"a": torch.zeros(4)})
    assert big.iteration == []
    with pytest.raises(ValueError, match="points must be even and >= 2, got 3"):
        HparamsPath(points=3)
