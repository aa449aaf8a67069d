"""Valid request bodies for the fuzzer, mixed into schemathesis's own.

A body that is valid against the OpenAPI schema is still mostly refused by the service: a job
spec whose ``K`` exceeds its ``inner.steps``, a study grid over a path the spec does not have,
a data set upload whose bytes are no ``.npz`` file, a webhook URL outside the operator's
allowed addresses. Left alone, schemathesis probes those routes almost only with 422s and
the stateful phase seldom gets an id to follow (a held-out run never reached the study and
webhook routes). :func:`install` makes about half of the positive bodies of ``POST /v1/jobs``,
``POST /v1/studies`` (grids and searches), ``POST /v1/datasets`` (small ``.npz`` files) and
``POST /v1/webhooks`` (a receiver URL the settings allow) valid ones drawn from the strategies
here; negative bodies (schemathesis's mutations) are left as they are, so the checks that a
wrong body is refused still see them.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

__all__ = ["datasets", "install", "job_specs", "studies", "webhooks"]

_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789 -_", min_size=1, max_size=30).map(
    lambda s: s.strip() or "fuzz"
)


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_EXAMPLES / name).read_text())
    return loaded


@st.composite
def _toy_spec(draw: st.DrawFn) -> dict[str, Any]:
    """A toy job of a few steps: every field within the spec's cross-field rules."""
    spec = copy.deepcopy(_example("toy.json"))
    steps = draw(st.integers(1, 20))
    spec["name"] = draw(_NAMES)
    spec["problem"]["w0"] = draw(st.lists(st.floats(-3, 3), min_size=2, max_size=2))
    spec["inner"]["steps"] = steps
    spec["inner"]["lr"] = draw(st.sampled_from([0.01, 0.05, 0.1, 0.3]))
    spec["hypergradient"] = draw(
        st.one_of(
            st.builds(lambda k: {"method": "truncated", "K": k}, st.integers(1, steps)),
            st.just({"method": "full"}),
        )
    )
    spec["outer"]["iterations"] = draw(st.integers(1, 30))
    spec["outer"]["optimizer"] = draw(st.sampled_from(["adam", "sgd"]))
    spec["diagnostics"]["every"] = draw(st.sampled_from([0, 5, 10]))
    spec["seed"] = draw(st.integers(0, 2**31 - 1))
    return spec


def job_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Job specs the service admits: toy jobs of a few steps and the quadratic example."""
    quadratic = st.builds(
        lambda seed: {**_example("quadratic.json"), "seed": seed}, st.integers(0, 1000)
    )
    return st.one_of(_toy_spec(), quadratic)


@st.composite
def _grid_study(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(_toy_spec())
    steps = base["inner"]["steps"]
    axes = {
        "seed": st.lists(st.integers(0, 100), min_size=1, max_size=3, unique=True),
        "outer.lr": st.lists(st.sampled_from([0.01, 0.1, 0.3]), min_size=1, unique=True),
        "hypergradient.K": st.lists(st.integers(1, steps), min_size=1, max_size=2, unique=True),
    }
    if base["hypergradient"]["method"] != "truncated":
        del axes["hypergradient.K"]
    names = draw(st.lists(st.sampled_from(sorted(axes)), min_size=1, max_size=2, unique=True))
    return {"name": draw(_NAMES), "base": base, "grid": {n: draw(axes[n]) for n in names}}


@st.composite
def _search_study(draw: st.DrawFn) -> dict[str, Any]:
    study = copy.deepcopy(_example("studies/toy-search.json"))
    search = study["search"]
    search["n_trials"] = draw(st.integers(1, 6))
    search["max_concurrent"] = draw(st.integers(1, 3))
    search["seed"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):
        del search["pruner"]
    study["name"] = draw(_NAMES)
    return study


def studies() -> st.SearchStrategy[dict[str, Any]]:
    """Studies the service accepts: grids over the toy job's seed, lr and K, and searches."""
    return st.one_of(_grid_study(), _search_study())


@st.composite
def _npz(draw: st.DrawFn) -> bytes:
    import numpy as np

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d, classes = draw(st.integers(1, 4)), draw(st.integers(2, 3))
    arrays: dict[str, Any] = {}
    for split in ("train", "val"):
        n = draw(st.integers(classes, 8))
        arrays[f"x_{split}"] = rng.normal(size=(n, d))
        # every class in train: its largest label is the class count
        arrays[f"y_{split}"] = np.arange(n) % classes
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def datasets() -> st.SearchStrategy[bytes]:
    """Small ``.npz`` classification sets with the required arrays (``jobs.datasets.checks``)."""
    return _npz()


def webhooks(url: str | Callable[[], str]) -> st.SearchStrategy[dict[str, Any]]:
    """Webhooks to ``url`` (an address the settings' ``webhook_allow`` takes).

    ``url`` may be a function, asked at each draw: a receiver started after the schema.
    """
    urls = st.builds(url) if callable(url) else st.just(url)
    return st.fixed_dictionaries({"url": urls}, optional={"description": _NAMES})


def install(
    schema: Any, *, webhook_url: str | Callable[[], str]
) -> dict[tuple[str, str], st.SearchStrategy[Any]]:
    """Mix the valid bodies into ``schema``'s generation (a hook on this schema only).

    Args:
        schema: a ``schemathesis`` OpenAPI schema of this service.
        webhook_url: the receiver the generated webhooks point to (or a function that
            names it when a body is drawn).

    Returns:
        The strategies, by ``(method, path)``.
    """
    from schemathesis.generation.value import GeneratedValue

    valid: dict[tuple[str, str], st.SearchStrategy[Any]] = {
        ("POST", "/v1/jobs"): job_specs(),
        ("POST", "/v1/studies"): studies(),
        ("POST", "/v1/datasets"): datasets(),
        ("POST", "/v1/webhooks"): webhooks(webhook_url),
    }

    def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> Any:
        op = context.operation
        ours = valid.get((op.method.upper(), op.path)) if op is not None else None
        if ours is None:
            return strategy

        def mix(value: Any) -> st.SearchStrategy[Any]:
            # a negative body carries its mutation: it stays (the refusal checks need it)
            if isinstance(value, GeneratedValue) and value.meta is not None:
                return st.just(value)
            return st.one_of(st.just(value), ours)

        return strategy.flatmap(mix)

    schema.hook("before_generate_body")(before_generate_body)
    return valid
