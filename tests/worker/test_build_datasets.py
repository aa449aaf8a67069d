"""Specs over a data set built into core problems: named results, groups, learned step."""

from __future__ import annotations

import copy
import io
import uuid

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import core
from jobs.specs.admission import admit
from jobs.specs.job import field_errors, parse_spec
from tests.dataset_files import digits_arrays
from tests.factories import example
from worker.build import build, hparams_npz

DATASET_ID = str(uuid.uuid4())


def _resolver(arrays):
    def resolve(ref):
        assert ref == DATASET_ID  # the spec's id reaches the resolver as it is
        return arrays

    return resolve


def _spec(kind, **problem):
    spec = copy.deepcopy(example(kind))
    if kind == "hypercleaning":  # sizes of the built-in sets only
        del spec["problem"]["n_train"], spec["problem"]["n_val"]
    spec["problem"].update(problem)
    spec["inner"]["steps"] = 10
    spec["hypergradient"] = {"method": "truncated", "K": 5}
    spec["outer"]["iterations"] = 3
    spec["diagnostics"]["every"] = 0
    return parse_spec(spec)


def _fit(built):
    return core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                    **built.fit_kwargs)  # fmt: skip


def test_hypercleaning_on_an_uploaded_dataset_learns_named_example_weights():
    arrays = digits_arrays(n_train=200, n_val=100)
    spec = _spec("hypercleaning", dataset=DATASET_ID, fraction=0.3)
    built = build(spec, datasets=_resolver(arrays))
    out = _fit(built)
    assert set(out.hparams) == {"example_weights"}
    assert out.hparams["example_weights"].shape == (200,)
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = built.problem.metrics(res.params, out.hparams)
    assert {"test_acc", "val_acc", "val_loss", "f1@-3"} <= set(metrics)
    with np.load(io.BytesIO(hparams_npz(out.hparams))) as z:
        assert z.files == ["example_weights"]


def test_hypercleaning_without_corruption_or_test_split_reports_no_f1_nor_test():
    arrays = digits_arrays(n_train=200, n_val=100)
    del arrays["x_test"], arrays["y_test"]
    spec = _spec("hypercleaning", dataset=DATASET_ID, fraction=0.0)
    built = build(spec, datasets=_resolver(arrays))
    lam = built.hparams
    w = core.hypergradient(built.problem, lam, built.dynamics, built.estimator).params
    assert set(built.problem.metrics(w, lam)) == {"val_acc", "val_loss"}


def test_n_train_with_an_uploaded_dataset_is_refused_at_the_field():
    spec = copy.deepcopy(example("hypercleaning"))
    spec["problem"]["dataset"] = DATASET_ID  # the example sets n_train and n_val
    with pytest.raises(ValidationError) as info:
        parse_spec(spec)

    assert sorted(e["field"] for e in field_errors(info.value)) == [
        "problem.n_train", "problem.n_val",
    ]  # fmt: skip


def test_a_stored_hypercleaning_spec_on_an_upload_parses_again():
    """The worker re-parses the stored spec, every default filled in: it must still pass."""
    stored = _spec("hypercleaning", dataset=DATASET_ID).model_dump(mode="json")
    assert stored["problem"]["n_train"] is None
    assert parse_spec(stored).problem.dataset == DATASET_ID


def test_per_group_penalties_have_one_entry_per_group():
    arrays = digits_arrays(n_train=200, n_val=100)
    arrays["groups"] = np.arange(64) // 16  # four groups of pixel rows
    spec = _spec("feature_regularization", dataset=DATASET_ID, model="softmax", per="group")
    built = build(spec, datasets=_resolver(arrays))
    assert built.hparams["feature_penalties"].shape == (4,)
    _fit(built)


def test_learning_the_step_size_adds_log_lr_beside_the_named_hparams():
    arrays = digits_arrays(n_train=200, n_val=100)
    raw = copy.deepcopy(example("mlp"))
    raw["problem"].update(dataset=DATASET_ID, hidden=[8])
    raw["inner"].update(steps=10, batch_size=50, learn_lr=True)
    raw["hypergradient"] = {"method": "truncated", "K": 5}
    raw["outer"]["iterations"] = 3
    built = build(parse_spec(raw), datasets=_resolver(arrays))
    assert set(built.hparams) == {"layer_decay", "log_lr"}
    out = _fit(built)
    assert not torch.equal(out.hparams["log_lr"], built.hparams["log_lr"])


def test_task_interaction_on_diabetes_couples_one_model_per_sex():
    raw = copy.deepcopy(example("task_interaction"))
    raw["outer"]["iterations"] = 15
    raw["diagnostics"]["every"] = 0
    built = build(parse_spec(raw))
    assert built.problem.n_tasks == 2
    out = _fit(built)
    assert set(out.hparams) == {"B", "nu"} and out.hparams["B"].shape == (2, 2)
    assert out.history["outer_loss"][-1] < out.history["outer_loss"][0]
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = built.problem.metrics(res.params, out.hparams)
    assert {"train_rmse", "val_rmse", "test_rmse", "mean_coupling", "rho"} <= set(metrics)


def test_task_interaction_on_a_table_without_a_task_column_is_refused_at_the_field():
    raw = copy.deepcopy(example("task_interaction"))
    raw["problem"]["dataset"] = "breast_cancer"
    with pytest.raises(ValidationError) as info:
        admit(raw)  # the fit check knows the built-in tables as it knows an upload
    assert [e["field"] for e in field_errors(info.value)] == ["problem.dataset"]
