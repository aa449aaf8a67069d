"""The job spec: strict, bounded, every error with its field path."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from jobs.kinds.registry import BUILTIN
from jobs.specs.admission import admit
from jobs.specs.job import METHODS, JobSpec, field_errors, parse_spec
from tests.factories import EXAMPLES, example, tiny_spec
from tests.shared_data import require_omniglot


def _fields(data) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_spec(data)
    return [e["field"] for e in field_errors(info.value)]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_example_is_a_valid_spec(path):
    spec = parse_spec(path.read_text())
    assert spec.problem.kind == path.stem


def test_there_is_one_example_per_built_in_problem_kind():
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == sorted(BUILTIN)


def test_problem_and_method_registries_match_core():
    import core

    assert set(BUILTIN) <= set(core.problems.PROBLEMS)
    # "auto" is no estimator of its own: the worker resolves it to truncated or full; the
    # single-loop methods are core's other registry
    assert set(METHODS) - {"auto"} == set(core.ESTIMATORS) | set(core.SINGLE_LOOP)
    assert not set(core.ESTIMATORS) & set(core.SINGLE_LOOP)


def test_K_larger_than_inner_steps_is_rejected_naming_the_field():
    spec = tiny_spec(steps=10)
    spec["hypergradient"] = {"method": "truncated", "K": 11}
    with pytest.raises(ValidationError) as info:
        parse_spec(spec)
    (err,) = field_errors(info.value)
    assert err["field"] == "hypergradient.K"
    assert "inner.steps=10" in err["message"] and "11" in err["message"]


def test_K_equal_to_inner_steps_is_accepted():
    spec = tiny_spec(steps=10)
    spec["hypergradient"] = {"method": "truncated", "K": 10}
    assert parse_spec(spec).hypergradient.K == 10


def test_unknown_fields_are_rejected_at_their_path():
    spec = tiny_spec()
    spec["problem"]["colour"] = "red"
    spec["outer"]["momentum"] = 0.9
    spec["extra"] = 1
    assert sorted(_fields(spec)) == ["extra", "outer.momentum", "problem.colour"]


def test_strict_types_refuse_strings_for_numbers_and_floats_for_ints():
    spec = tiny_spec()
    spec["outer"]["iterations"] = "20"
    spec["inner"]["steps"] = 10.0
    assert sorted(_fields(spec)) == ["inner.steps", "outer.iterations"]


def test_an_int_is_accepted_for_a_float():
    spec = tiny_spec()
    spec["inner"]["lr"] = 1
    assert parse_spec(spec).inner.lr == 1.0


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("inner", "steps"), 0),
        (("inner", "steps"), 10**9),
        (("inner", "lr"), 0.0),
        (("inner", "lr"), float("inf")),
        (("inner", "momentum"), 1.0),
        (("outer", "iterations"), 10**9),
        (("outer", "lr"), -0.1),
        (("diagnostics", "every"), -1),
        (("seed",), -1),
        (("seed",), 2**40),
        (("name",), ""),
        (("name",), "x" * 201),
        (("device",), "tpu"),
        (("stall_s",), 0.5),
        (("stall_s",), 86_401),
    ],
)
def test_numbers_and_strings_are_bounded(path, value):
    spec = tiny_spec()
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _fields(spec) == [".".join(path)]


def test_unknown_problem_kind_is_reported_at_problem_kind():
    spec = tiny_spec()
    spec["problem"] = {"kind": "mnist_magic"}
    assert _fields(spec) == ["problem.kind"]


def test_missing_method_is_reported_at_hypergradient_method():
    spec = tiny_spec()
    spec["hypergradient"] = {"K": 3}
    assert _fields(spec) == ["hypergradient.method"]


def test_method_options_belong_to_their_method():
    spec = tiny_spec()
    spec["hypergradient"] = {"method": "full", "K": 3}
    assert _fields(spec) == ["hypergradient.K"]


def test_quadratic_cross_checks_name_their_fields():
    spec = copy.deepcopy(example("quadratic"))
    spec["problem"].update(mu=2.0, L=1.0)
    assert _fields(spec) == ["problem.mu"]
    spec = copy.deepcopy(example("quadratic"))
    spec["problem"].update(structured=True, dim=1)
    assert _fields(spec) == ["problem.structured"]


def test_checkpoint_segment_longer_than_horizon_is_rejected():
    spec = tiny_spec(steps=10)
    spec["hypergradient"] = {"method": "checkpointed", "segment": 20}
    assert _fields(spec) == ["hypergradient.segment"]


def test_json_text_and_dict_give_the_same_spec():
    data = example("toy")
    assert parse_spec(json.dumps(data)) == parse_spec(data)


def test_every_example_builds_core_objects_that_run():
    from worker.build import build

    for path in sorted(EXAMPLES.glob("*.json")):
        # one_shot reads Omniglot from the worker's data directory
        data_dir = require_omniglot() if path.stem == "one_shot" else None
        built = build(parse_spec(path.read_text()), data_dir)
        out = built.fit(iterations=2)
        assert len(out.history["outer_loss"]) == 2, path.name


def test_learn_lr_adds_a_log_step_size_hyperparameter():
    import core
    from worker.build import build

    spec = tiny_spec()
    spec["inner"]["learn_lr"] = True
    built = build(parse_spec(spec))
    assert set(built.hparams) == {"lam", "log_lr"}
    out = core.fit(built.problem, built.hparams, built.dynamics, built.estimator, iterations=3)
    assert float(out.hparams["log_lr"].abs()) > 0  # the step size was learned


def test_learned_step_keeps_the_closed_form_gradient_and_its_value():
    import torch

    import core
    from worker.build import build

    spec = tiny_spec()  # the toy problem, which has a closed-form inner gradient
    spec["inner"]["learn_lr"] = True
    built = build(parse_spec(spec))
    assert built.problem.inner_grad is not None
    lam = {k: v.double() for k, v in built.hparams.items()}
    fast = core.hypergradient(built.problem, lam, built.dynamics, core.Full()).grad
    built.problem.inner_grad = None  # autograd's double backward instead
    slow = core.hypergradient(built.problem, lam, built.dynamics, core.Full()).grad
    for k in lam:
        assert torch.allclose(fast[k], slow[k], rtol=1e-12, atol=1e-14), k


def test_spec_schema_is_closed():
    schema = JobSpec.model_json_schema()
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("problem", "field", "words"),
    [
        ({"meta_batch": 33}, "problem.meta_batch", "32"),
        ({"ways": 21}, "problem.ways", "20"),
        ({"width": 0}, "problem.width", "1"),
        ({"eval_tasks": 2001}, "problem.eval_tasks", "2000"),
        ({"shots": 5, "queries": 16}, "problem.queries", "shots + queries must be <= 20"),
    ],
)
def test_one_shot_options_out_of_limits_name_the_field_and_limit(problem, field, words):
    spec = copy.deepcopy(example("one_shot"))
    spec["problem"].update(problem)
    with pytest.raises(ValidationError) as info:
        parse_spec(spec)
    (err,) = field_errors(info.value)
    assert err["field"] == field and words in err["message"]


@pytest.mark.parametrize(
    ("problem", "inner", "field"),
    [
        ({"dataset": "digits", "n_tasks": 11}, {}, "problem.n_tasks"),
        ({"dataset": "omniglot", "n_tasks": 20, "n_train": 19}, {}, "problem.n_train"),
        ({"dataset": "omniglot"}, {"batch_size": 10}, "inner.batch_size"),
        ({"dataset": "diabetes", "n_tasks": 2}, {}, "problem.n_tasks"),
        ({"dataset": "breast_cancer"}, {}, "problem.dataset"),
    ],
)
def test_task_interaction_options_belong_to_their_set_up(problem, inner, field):
    spec = copy.deepcopy(example("task_interaction"))
    spec["problem"] = {"kind": "task_interaction", **problem}
    spec["inner"].update(inner)
    with pytest.raises(ValidationError) as info:
        admit(spec)  # a table without a task column: the data-set fit check refuses it
    assert [e["field"] for e in field_errors(info.value)] == [field]


def test_task_interaction_on_the_papers_data_sets_needs_no_upload():
    spec = copy.deepcopy(example("task_interaction"))
    for name in ("digits", "mnist", "fashion-mnist", "omniglot"):
        spec["problem"] = {"kind": "task_interaction", "dataset": name, "n_tasks": 10}
        assert parse_spec(spec).problem.dataset == name


@pytest.mark.parametrize("value", ["auto", "on", 1, None])
def test_graphed_is_a_boolean(value):
    spec = tiny_spec()
    spec["hypergradient"]["graphed"] = value
    with pytest.raises(ValidationError) as info:
        parse_spec(spec)
    assert [e["field"] for e in field_errors(info.value)] == ["hypergradient.graphed"]
    spec["hypergradient"]["graphed"] = False
    assert parse_spec(spec).hypergradient.graphed is False


@pytest.mark.parametrize(
    "method",
    [
        {"method": "full"},
        {"method": "truncated", "K": 3},
        {"method": "checkpointed"},
        {"method": "auto", "memory_mb": 1.0},
    ],
)
def test_unrolled_methods_may_ask_for_compiled_steps(method):
    spec = tiny_spec()
    pairs = (("on", "on"), ("off", "off"), ("auto", "auto"), (True, "on"), (False, "off"))
    for given, read in pairs:
        spec["hypergradient"] = {**method, "compile": given}
        assert parse_spec(spec).hypergradient.compile == read
    spec["hypergradient"] = method
    assert parse_spec(spec).hypergradient.compile == "auto"  # compile where it pays


def test_compile_is_one_of_three_strings_in_the_schema():
    spec = tiny_spec()
    spec["hypergradient"] = {"method": "full", "compile": "sometimes"}
    assert _fields(spec) == ["hypergradient.compile"]
    schema = JobSpec.model_json_schema()["$defs"]["FullSpec"]["properties"]["compile"]
    assert schema["enum"] == ["auto", "on", "off"] and schema["default"] == "auto"


@pytest.mark.parametrize("method", [{"method": "forward"}, {"method": "implicit"}])
def test_compile_belongs_to_the_unrolled_methods(method):
    spec = tiny_spec()
    spec["hypergradient"] = {**method, "compile": "on"}
    assert _fields(spec) == ["hypergradient.compile"]
