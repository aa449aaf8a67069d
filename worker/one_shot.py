"""The ``one_shot`` job (Section 4.2.3): Omniglot's problems, meta-batches and meta-test.

Meta-training draws a fresh meta-batch every hyper-iteration, from a generator of the job's
seed and the iteration alone (:func:`core.problems.one_shot_tasks.iteration_generator`), so
a job resumed from its checkpoint sees the tasks an uninterrupted one would. At the end the
learned ``λ`` adapts to ``eval_tasks`` meta-test tasks (the 323 held-out characters), the
same tasks ``bilevel reproduce one-shot --seed S`` evaluates on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import core
from core.problems.one_shot import OneShot, TaskBatch, evaluate
from core.problems.one_shot_tasks import OneShotSplits, iteration_generator, task_generator
from jobs.kinds.one_shot import OneShotSpec
from worker.data_dir import require_data

__all__ = ["OneShotJob", "one_shot"]

# the reproduction's meta-test tasks are those of seed + 3 (experiments/one_shot/experiment.py)
_TEST_STREAM = 3


def one_shot(
    options: OneShotSpec,
    *,
    seed: int,
    device: torch.device,
    data_dir: str | Path | None = None,
    **_: Any,
) -> OneShotJob:
    """The ``one_shot`` kind's factory: load Omniglot from the worker's ``data_dir``.

    Raises:
        DataMissing: ``data_dir`` is unset or holds no ``omniglot/``.
        core.ConfigurationError: the files fail their checks.
    """
    p = options
    root = require_data(data_dir, "one_shot", "omniglot")
    splits = OneShotSplits.from_omniglot(
        root, seed=seed, ways=p.ways, shots=p.shots, queries=p.queries,
        meta_batch=p.meta_batch, width=p.width, regularize=p.regularize, device=device,
    )  # fmt: skip
    tasks = splits.test.sample(task_generator(seed + _TEST_STREAM), p.eval_tasks)
    return OneShotJob(splits.train, splits.test, tasks, seed=seed, rho_init=p.rho_init)


@dataclass(eq=False)
class OneShotJob(core.BilevelProblem):
    """A one-shot job: the meta-training problem, its task schedule and meta-test tasks.

    It is the meta-training problem (every loss is :attr:`train`'s) with the factory
    contract's optional hooks: a fresh meta-batch per hyper-iteration and the meta-test.
    """

    train: OneShot
    test: OneShot
    test_tasks: TaskBatch
    seed: int
    rho_init: float
    # the paper learns the inner step size (App. G.3): it is in λ already
    learned_lr_key = "log_lr"

    def init(self, hparams: Any) -> Any:
        return self.train.init(hparams)

    def inner_loss(self, params: Any, hparams: Any) -> torch.Tensor:
        return self.train.inner_loss(params, hparams)

    def outer_loss(self, params: Any, hparams: Any) -> torch.Tensor:
        return self.train.outer_loss(params, hparams)

    def metrics(self, params: Any, hparams: Any) -> dict[str, float]:
        return self.train.metrics(params, hparams)

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.train.inputs()

    def set_inputs(self, tensors: tuple[torch.Tensor, ...]) -> None:
        self.train.set_inputs(tensors)

    def initial_hparams(self) -> dict[str, torch.Tensor]:
        """The reproduction's ``λ_0``: He-normal kernels, ``ρ_j = rho_init``, ``γ = inner.lr``."""
        return self.train.initial_hparams(seed=self.seed, lr_scale=1.0, rho=self.rho_init)

    def before_iteration(self, iteration: int) -> None:
        """Make hyper-iteration ``iteration``'s meta-batch the current one."""
        self.train.set_batch(self.train.sample(iteration_generator(self.seed, iteration)))

    def evaluate(self, hparams: Any, dynamics: core.GradientDescent) -> dict[str, float]:
        """Meta-test accuracy (Table 4) with the half-width of its 95% interval over tasks."""
        got = evaluate(self.test, hparams, dynamics, self.test_tasks)
        return {
            "test_accuracy": got["query_accuracy"],
            "test_accuracy_ci95": got["accuracy_ci95"],
            "test_loss": got["query_loss"],
            "test_tasks": float(self.test_tasks.size),
        }
