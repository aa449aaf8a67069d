"""The hyper-iteration loop: schedules, first-step scaling, diagnostics and exact resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

import core
from core.problems import Quadratic, Toy

from .helpers import F64, LearnedLrToy

DYN = core.GradientDescent(steps=50, lr=0.1)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_first_update_has_the_requested_norm(optimizer):
    p = Toy()
    lam0 = p.initial_hparams()
    out = core.fit(
        p, lam0, DYN, core.Truncated(3), iterations=1, optimizer=optimizer, first_step_norm=0.6
    )
    assert float((out.hparams - lam0).norm()) == pytest.approx(0.6, rel=1e-12)
    assert out.state.eta0 > 0


def test_inv_sqrt_schedule_sets_eta0_over_sqrt_tau():
    out = core.fit(
        Toy(),
        Toy().initial_hparams(),
        DYN,
        core.Truncated(1),
        iterations=9,
        optimizer="sgd",
        lr=0.05,
        schedule="inv_sqrt",
    )
    assert out.history["lr"] == pytest.approx([0.05 / math.sqrt(t) for t in range(1, 10)])
    assert out.history["iteration"] == list(range(1, 10))


def test_sgd_step_is_minus_lr_times_hypergradient():
    p, lam = Toy(), torch.tensor([0.5, 1.5], dtype=F64)
    h = core.hypergradient(p, lam, DYN, core.Truncated(4)).grad
    out = core.fit(p, lam, DYN, core.Truncated(4), iterations=1, optimizer="sgd", lr=0.01)
    assert torch.allclose(out.hparams, lam - 0.01 * h, rtol=0, atol=1e-15)


def test_records_loss_norm_time_and_exact_diagnostics():
    p = Toy()
    out = core.fit(p, p.initial_hparams(), DYN, core.Truncated(2), iterations=7, exact_every=3)
    hist = out.history
    assert set(hist) >= {
        "outer_loss",
        "grad_norm",
        "time_s",
        "exact_norm",
        "cosine",
        "rel_error",
        "descent_ratio",
    }
    measured = [i for i, c in enumerate(hist["cosine"]) if not math.isnan(c)]
    assert [hist["iteration"][i] for i in measured] == [1, 3, 6]
    # the first record compares h_{T-2} and d_λ f at the starting λ, in closed form
    _, _, _, d, h = p.closed_form(p.initial_hparams(), 50, 0.1, K=2)
    assert hist["exact_norm"][0] == pytest.approx(float(d.norm()), rel=1e-12)
    assert hist["cosine"][0] == pytest.approx(float(h @ d / (h.norm() * d.norm())), rel=1e-12)
    assert hist["grad_norm"][0] == pytest.approx(float(h.norm()), rel=1e-12)
    assert all(t > 0 for t in hist["time_s"])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resumed_run_continues_exactly_as_uninterrupted(optimizer):
    p = LearnedLrToy()
    dyn = core.GradientDescent(steps=20, lr=0.1, momentum=0.5, lr_key="log_lr")
    kw = dict(optimizer=optimizer, schedule="inv_sqrt", first_step_norm=0.3, exact_every=2)
    whole = core.fit(p, p.hparams(), dyn, core.Truncated(3), iterations=12, **kw)
    first = core.fit(p, p.hparams(), dyn, core.Truncated(3), iterations=5, **kw)
    buffer = io.BytesIO()
    torch.save(first.state.state_dict(), buffer)  # through bytes, as a worker would
    buffer.seek(0)
    state = core.FitState.from_state_dict(torch.load(buffer))
    rest = core.fit(p, p.hparams(), dyn, core.Truncated(3), iterations=12, state=state, **kw)
    for k in whole.hparams:
        assert torch.equal(rest.hparams[k], whole.hparams[k]), k
    for col in ("outer_loss", "grad_norm", "lr", "cosine"):
        assert rest.history[col] == pytest.approx(whole.history[col], nan_ok=True, rel=0, abs=0)


def test_callback_sees_every_iteration_and_can_stop():
    seen = []

    def callback(record, state):
        seen.append((record["iteration"], state.iteration))
        return record["iteration"] == 4

    out = core.fit(
        Toy(), Toy().initial_hparams(), DYN, core.Truncated(1), iterations=10, callback=callback
    )
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert out.stopped and out.state.iteration == 4 and len(out.history["iteration"]) == 4


def test_fit_does_not_touch_the_callers_hparams():
    lam = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    core.fit(Toy(), lam, DYN, core.Full(), iterations=3)
    assert lam.tolist() == [1.0, 2.0] and lam.grad is None


def test_adam_on_quadratic_reduces_the_upper_loss():
    q = Quadratic(dim=10, n_hparams=4, seed=5)
    out = core.fit(
        q,
        q.initial_hparams(),
        core.GradientDescent(30, lr=0.8),
        core.Truncated(5),
        iterations=150,
        lr=0.1,
    )
    assert out.history["outer_loss"][-1] < 0.5 * out.history["outer_loss"][0]


class _Exploding(Toy):
    def outer_loss(self, params, hparams):
        # finite until λ crosses 2.5 (it heads for 2.84), then NaN: the run must say when
        return super().outer_loss(params, hparams) * torch.where(
            hparams[0] < 2.5, 1.0, float("nan")
        )


def test_divergence_names_the_hyper_iteration():
    with pytest.raises(core.DivergenceError, match=r"hyper-iteration \d+: outer loss") as exc:
        core.fit(
            _Exploding(),
            torch.tensor([2.0, 2.0], dtype=F64),
            DYN,
            core.Truncated(1),
            iterations=200,
            optimizer="sgd",
            lr=0.5,
        )
    assert exc.value.iteration > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(iterations=0), "iterations must be an integer >= 1, got 0"),
        (dict(iterations=3, optimizer="rmsprop"), "optimizer must be one of"),
        (dict(iterations=3, schedule="cosine"), "schedule must be one of"),
        (dict(iterations=3, lr=0.0), "lr must be a finite number > 0, got 0.0"),
        (dict(iterations=3, first_step_norm=-1), "first_step_norm must be > 0"),
        (dict(iterations=3, exact_every=-2), "exact_every must be an integer >= 0, got -2"),
    ],
)
def test_bad_fit_arguments_are_named(kwargs, message):
    with pytest.raises(core.ConfigurationError, match=message):
        core.fit(Toy(), Toy().initial_hparams(), DYN, core.Full(), **kwargs)


def test_without_history_the_run_is_the_same_and_states_stay_small():
    p = Toy()
    records = []
    kw = dict(iterations=6, exact_every=2)
    lean = core.fit(p, p.initial_hparams(), DYN, core.Truncated(2), keep_history=False,
                    callback=lambda record, state: records.append(record), **kw)  # fmt: skip
    full = core.fit(p, p.initial_hparams(), DYN, core.Truncated(2), **kw)
    assert torch.equal(lean.hparams, full.hparams)
    assert all(len(v) == 0 for v in lean.state.history.values())
    assert [r["outer_loss"] for r in records] == full.history["outer_loss"]
