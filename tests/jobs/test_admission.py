"""The problem-kind registry and the one admission function, without a store."""

from __future__ import annotations

import copy
import dataclasses
import logging

import pytest
from pydantic import ValidationError

from jobs.kinds.base import DatasetInfo, PluginError
from jobs.kinds.registry import BUILTIN, KINDS, PLUGINS, REFUSED, load_plugin_factories
from jobs.kinds.tables import TABLES
from jobs.specs.admission import admit
from jobs.specs.job import field_errors
from tests.factories import example, tiny_spec

MISSING = "00000000-0000-4000-8000-000000000000"


def _fields(exc: ValidationError) -> list[str]:
    return [e["field"] for e in field_errors(exc)]


def test_every_builtin_kind_is_one_module_holding_its_options_and_hooks():
    for name, kind in BUILTIN.items():
        module = type(kind).__module__
        assert module.startswith("jobs.kinds."), name
        assert kind.options.__module__ == module, name
        assert kind.factory.partition(":")[0].startswith("worker."), name


def test_the_builtin_tables_are_described_as_the_worker_loads_them():
    from worker.datasets import builtin_table

    for name, info in TABLES.items():
        arrays = builtin_table(name, seed=3)
        assert info.arrays == frozenset(arrays), name
        assert dict(info.rows) == {s: len(arrays[f"y_{s}"]) for s in ("train", "val", "test")}
        assert info.n_features == arrays["x_train"].shape[1], name
        classification = arrays["y_train"].dtype.kind in "iub"
        assert info.task == ("classification" if classification else "regression"), name
        expected_classes = int(arrays["y_train"].max()) + 1 if classification else 0
        assert info.n_classes == expected_classes, name
        tasks = int(arrays["task_train"].max()) + 1 if "task_train" in arrays else 0
        assert info.n_tasks == tasks, name


def test_an_uploaded_data_set_without_a_store_is_refused_at_its_field():
    spec = example("feature_regularization")
    spec["problem"]["dataset"] = MISSING
    with pytest.raises(ValidationError) as info:
        admit(spec)
    assert _fields(info.value) == ["problem.dataset"]
    assert "uploaded to a service" in field_errors(info.value)[0]["message"]


def test_a_missing_data_set_is_refused_naming_it_and_a_found_one_is_fit_checked():
    spec = example("feature_regularization")
    spec["problem"].update(dataset=MISSING, model="logistic", per="group")
    with pytest.raises(ValidationError) as info:
        admit(spec, datasets=lambda ref: None)
    assert _fields(info.value) == ["problem.dataset"]
    assert f"no dataset {MISSING} for this team" in str(info.value)
    regression = DatasetInfo(MISSING, "prices", "regression", 0, 5, {"train": 20, "val": 5})
    with pytest.raises(ValidationError) as info:
        admit(spec, datasets=lambda ref: regression)
    # logistic on a regression set (twice: the task, the classes) and no groups array
    assert _fields(info.value) == ["problem.model", "problem.model", "problem.per"]


def test_a_plugin_kinds_data_set_option_is_checked_like_a_builtin_ones():
    spec = tiny_spec(problem={"kind": "digits_mlp", "dataset": MISSING})
    with pytest.raises(ValidationError) as info:
        admit(spec, datasets=lambda ref: None)
    assert _fields(info.value) == ["problem.dataset"]
    wrong = DatasetInfo(MISSING, "iris", "classification", 3, 4, {"train": 90, "val": 30})
    with pytest.raises(ValidationError) as info:
        admit(spec, datasets=lambda ref: wrong)
    assert field_errors(info.value)[0]["message"] == (
        "digits_mlp needs 64 features and 10 classes; iris has 4 features (classification, "
        "3 classes)"
    )
    digits = dataclasses.replace(wrong, n_classes=10, n_features=64)
    assert admit(spec, datasets=lambda ref: digits).problem.kind == "digits_mlp"


def test_a_plugin_with_sizes_is_held_to_the_graph_budget():
    from jobs.specs.budget import BudgetLimits

    spec = tiny_spec(problem={"kind": "digits_mlp", "hidden": 256})
    spec["hypergradient"] = {"method": "full"}
    spec["diagnostics"] = {"every": 0}
    with pytest.raises(ValidationError) as info:
        admit(spec, limits=BudgetLimits(max_graph_bytes=1 << 20))
    assert _fields(info.value) == ["inner.steps"]
    assert "max_graph_bytes" in field_errors(info.value)[0]["message"]


def test_a_plugin_whose_problem_lacks_initial_hparams_is_refused_at_load(monkeypatch, caplog):
    import core

    class Partial(core.BilevelProblem):
        def init(self, hparams):
            return hparams

        def inner_loss(self, params, hparams):
            return params.sum()

        def outer_loss(self, params, hparams):
            return params.sum()

    monkeypatch.setattr(core, "PartialForTest", Partial, raising=False)
    broken = dataclasses.replace(PLUGINS["digits_mlp"], factory="core:PartialForTest")
    monkeypatch.setitem(PLUGINS, "digits_mlp", broken)
    monkeypatch.setattr("jobs.kinds.registry.REFUSED", {})
    with caplog.at_level(logging.ERROR, logger="jobs.kinds.registry"):
        refused = load_plugin_factories()
    assert "digits_mlp" in refused
    assert "plugin package 'bilevel-digits-mlp'" in caplog.text
    assert "its problem Partial does not define initial_hparams" in caplog.text
    with pytest.raises(PluginError, match="does not define initial_hparams"):
        broken.load_factory()


def test_a_plugin_factory_that_does_not_say_what_it_returns_is_refused():
    broken = dataclasses.replace(PLUGINS["digits_mlp"], factory="copy:deepcopy")
    with pytest.raises(PluginError, match="annotate the subclass it returns"):
        broken.load_factory()


def test_the_example_plugin_meets_the_contract_and_nothing_is_refused():
    assert not REFUSED
    assert callable(KINDS["digits_mlp"].load_factory())


@pytest.mark.parametrize("kind", sorted(BUILTIN))
def test_every_kind_sizes_its_example_spec(kind):
    from jobs.specs.budget import estimate

    # the examples over a data set name a built-in table or the paper's: no store needed
    spec = admit(copy.deepcopy(example(kind)))
    assert estimate(spec).method_bytes > 0


def _hypercleaning(inner: int | None = None, outer: int | None = None, **problem) -> dict:
    spec = copy.deepcopy(example("hypercleaning"))
    spec["problem"].update(problem)
    spec["inner"]["batch_size"] = inner
    spec["outer"]["batch_size"] = outer
    return spec


def test_built_in_hypercleaning_takes_batch_sizes_of_both_levels():
    spec = admit(_hypercleaning(50, 25))
    assert (spec.inner.batch_size, spec.outer.batch_size) == (50, 25)


def test_a_batch_larger_than_its_split_is_refused_naming_field_and_limit():
    with pytest.raises(ValidationError) as info:
        admit(_hypercleaning(1001, 501))
    errors = {e["field"]: e["message"] for e in field_errors(info.value)}
    assert errors == {
        "inner.batch_size": "inner.batch_size must be <= the 1000 training rows of the "
        "problem, got 1001",
        "outer.batch_size": "outer.batch_size must be <= the 500 validation rows of the "
        "problem, got 501",
    }
    admit(_hypercleaning(1000, 500))  # a batch of the whole split is allowed


def test_batch_sizes_are_bounded_by_an_uploaded_or_built_in_tables_rows():
    info = dataclasses.replace(TABLES["breast_cancer"], ref=MISSING, name="mine")
    rows = info.rows["train"]
    with pytest.raises(ValidationError) as exc:
        admit(_hypercleaning(rows + 1, dataset=MISSING, n_train=None, n_val=None),
              datasets={MISSING: info}.get)  # fmt: skip
    (error,) = field_errors(exc.value)
    assert error["field"] == "inner.batch_size" and f"the {rows} training rows" in error["message"]
    spec = copy.deepcopy(example("mlp"))
    spec["problem"]["dataset"] = "diabetes"
    spec["inner"]["batch_size"] = TABLES["diabetes"].rows["train"] + 1
    with pytest.raises(ValidationError) as exc:
        admit(spec)
    assert _fields(exc.value) == ["inner.batch_size"]


def test_validation_batches_belong_to_the_kinds_that_have_them():
    spec = tiny_spec()
    spec["outer"]["batch_size"] = 10
    with pytest.raises(ValidationError) as exc:
        admit(spec)
    (error,) = field_errors(exc.value)
    assert error["field"] == "outer.batch_size"
    assert "(hypercleaning)" in error["message"] and "not 'toy'" in error["message"]
