"""Which jobs' hypergradients run as CUDA graphs (``core.Graphed``), and the recorded reason.

The selection is tested on the CPU with ``torch.device("cuda")`` as a value (nothing runs
there); the test marked ``gpu`` runs the same job graphed and eagerly through the worker.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

import core
from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job
from tests.factories import example, queued_job, small_one_shot, tiny_spec
from tests.shared_data import require_omniglot
from worker.build import build
from worker.graphing import graph_refusal
from worker.runner import execute_job
from worker.settings import WorkerSettings

CUDA = torch.device("cuda")


def _spec(method=None, **over):
    spec = tiny_spec(**over)
    if method is not None:
        spec["hypergradient"] = method
    return parse_spec(spec)


@pytest.mark.parametrize(
    "method",
    [
        {"method": "full"},
        {"method": "truncated", "K": 3},
        {"method": "checkpointed", "segment": 2},
        {"method": "auto", "memory_mb": 1.0},
    ],
)
def test_unrolled_methods_on_cuda_run_graphed(method):
    assert graph_refusal(_spec(method), CUDA) is None


def test_one_shot_on_cuda_runs_graphed():
    assert graph_refusal(parse_spec(example("one_shot")), CUDA) is None


@pytest.mark.parametrize(
    ("spec", "device", "words"),
    [
        (_spec(), torch.device("cpu"), "device cpu"),
        (_spec({"method": "truncated", "K": 3, "graphed": False}), CUDA,
         "hypergradient.graphed is false"),
        (_spec({"method": "truncated", "K": 3, "compile": "on"}), CUDA,
         "hypergradient.compile is 'on'"),
        (_spec({"method": "forward"}), CUDA, "hypergradient.method='forward'"),
        (_spec({"method": "implicit"}), CUDA, "hypergradient.method='implicit'"),
    ],
)  # fmt: skip
def test_the_reason_for_running_eagerly_names_what_decides_it(spec, device, words):
    assert words in graph_refusal(spec, device)


def test_compile_auto_on_cuda_leaves_the_hypergradients_graphed():
    assert graph_refusal(_spec({"method": "truncated", "K": 3, "compile": "auto"}), CUDA) is None


def test_validation_batches_run_eagerly():
    spec = copy.deepcopy(example("hypercleaning"))
    spec["outer"]["batch_size"] = 50
    assert "outer.batch_size=50" in graph_refusal(parse_spec(spec), CUDA)


def test_per_step_minibatches_run_eagerly():
    spec = copy.deepcopy(example("mlp"))
    spec["problem"]["dataset"] = "diabetes"
    spec["inner"]["batch_size"] = 32
    assert "inner.batch_size=32" in graph_refusal(parse_spec(spec), CUDA)


def test_the_flag_is_reported_before_the_device():
    spec = _spec({"method": "truncated", "K": 3, "graphed": False})
    assert graph_refusal(spec, torch.device("cpu")) == "hypergradient.graphed is false"


def test_a_cpu_build_runs_eagerly_and_records_why():
    built = build(_spec(device="cpu"))
    assert built.notes["graphed"] is False
    assert built.notes["graphed_reason"].startswith("device cpu")
    # Metered around the estimator itself (which compiles if it pays), not core.Graphed
    assert isinstance(built.estimator.estimator.estimator, core.Truncated)


def _run(sessions, spec, settings):
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, settings) == "succeeded"
    with sessions() as s:
        job = s.get(Job, job_id)
        trace = repo.trace_columns(s, job_id, fields=["outer_loss"])
        data = repo.load_artifact(s, job_id, "hparams").data
    with np.load(io.BytesIO(data)) as z:
        hparams = {k: z[k] for k in z.files}
    return job.summary, trace["outer_loss"], hparams


@pytest.mark.gpu
def test_graphed_one_shot_job_on_cuda_equals_the_eager_one(sqlite_sessions):
    settings = WorkerSettings(flush_every_s=0.01, BILEVEL_DATA_DIR=require_omniglot())
    spec = small_one_shot(iterations=6)
    # SGD: the update is linear in the hypergradient, so float32 noise stays noise (Adam's
    # first steps are sign-like and would amplify it where a coordinate is near zero)
    spec["outer"].update(optimizer="sgd", lr=0.05)
    spec["device"] = "cuda"
    graphed = _run(sqlite_sessions, spec, settings)
    spec["hypergradient"]["graphed"] = False
    eager = _run(sqlite_sessions, spec, settings)
    assert graphed[0]["graphed"] is True and "graphed_reason" not in graphed[0]
    assert eager[0]["graphed"] is False
    assert eager[0]["graphed_reason"] == "hypergradient.graphed is false"
    np.testing.assert_allclose(graphed[1], eager[1], rtol=1e-4)
    for k, v in eager[2].items():
        np.testing.assert_allclose(graphed[2][k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    accuracy = [r[0]["metrics"]["test_accuracy"] for r in (graphed, eager)]
    assert abs(accuracy[0] - accuracy[1]) <= 1e-6 + 1 / (6 * 3 * 2)  # at most one query flips
