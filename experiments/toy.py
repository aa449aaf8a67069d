"""The toy problem of Section 4.1: Figures 1-4 as PNG files and a report of the numbers.

``bilevel reproduce toy --out DIR`` writes ``fig1_prop31.png`` (the objective and the bias
bound of Prop. 3.1), ``fig2_descent_ratio.png`` (``h^T d / ||d||²`` along the 1-RMD path,
Lemma 3.2), ``fig3_biased.png`` (biased convergence on ``f~``, Theorem 3.3),
``fig4_convergence.png`` (exact convergence on ``f``, Theorem 3.4) and ``report.md``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

import core
from core.problems import Toy
from core.tree import as_tensor
from experiments._report import Progress, markdown_table, savefig

GAMMA, T = 0.1, 100
EXACT_EVERY = 5  # exact d_λ f every that many hyper-iterations (and at the first)
RATIO_POINTS = 60  # log-spaced iterates at which Figure 2 is evaluated
F64 = torch.float64


def add_arguments(parser: argparse.ArgumentParser, data_dir: str | None = None) -> None:
    """Options of ``bilevel reproduce toy``; ``data_dir`` is unused (the toy needs no data)."""
    parser.add_argument("--out", type=Path, required=True, help="directory for figures and report")
    parser.add_argument(
        "--K", type=int, nargs="+", default=[1, 2, 5, 25, 100], help="truncation depths (<= 100)"
    )
    parser.add_argument("--iterations", type=int, default=500, help="hyper-iterations per run")
    parser.add_argument(
        "--start", type=float, nargs=2, default=[1.2, 1.6], help="initial λ (two numbers)"
    )


def run(args: argparse.Namespace) -> int:
    """Run every experiment of Section 4.1 and write the figures and ``report.md``."""
    Ks = sorted(set(args.K))
    if any(k < 1 or k > T for k in Ks):
        raise core.ConfigurationError(f"--K values must be in [1, T={T}], got {args.K}")
    if args.iterations < 1:
        raise core.ConfigurationError(f"--iterations must be >= 1, got {args.iterations}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = torch.tensor(args.start, dtype=F64)
    dyn = core.GradientDescent(steps=T, lr=GAMMA)
    began = time.perf_counter()
    progress = Progress(total=2 + 2 * len(Ks) + 2, label="toy")

    bound_rows = _prop31(out, dyn, progress)
    runs = {}
    for biased in (False, True):
        for K in Ks:
            progress.step(f"{'f~' if biased else 'f'} K={K}")
            runs[biased, K] = _fit(Toy(biased=biased), start, dyn, K, args.iterations)
    ratios = {b: _ratios(Toy(biased=b), runs[b, Ks[0]], dyn, Ks, progress) for b in (False, True)}
    optimum = _optimum(Toy(biased=True), start, dyn, args.iterations)
    progress.step("figures")
    _figure2(out, ratios, runs, Ks)
    _trajectories(out / "fig3_biased.png", Toy(biased=True), runs, True, Ks, optimum)
    _trajectories(out / "fig4_convergence.png", Toy(), runs, False, Ks, None)
    progress.close()
    elapsed = time.perf_counter() - began
    (out / "report.md").write_text(_report(args, Ks, bound_rows, runs, ratios, optimum, elapsed))
    print(f"wrote {out / 'report.md'} and 4 figures in {elapsed:.1f} s")
    return 0


def _fit(problem: Toy, start, dyn, K: int, iterations: int) -> dict:
    """Footnote 4: SGD, η_τ = η_0 / sqrt(τ), η_0 set so the first update has norm 0.6."""
    path = [start.clone()]

    def record(_, state):
        path.append(state.hparams.clone())

    res = core.fit(
        problem, start, dyn, core.Truncated(K), iterations=iterations, optimizer="sgd",
        schedule="inv_sqrt", first_step_norm=0.6, exact_every=EXACT_EVERY, callback=record,
    )  # fmt: skip
    return {"path": torch.stack(path), "history": res.history, "final": res.hparams}


def _ratios(problem: Toy, base: dict, dyn, Ks, progress) -> dict:
    """Figure 2: ``h_{T-K}^T d / ||d||²`` for each K at the points of the smallest-K path."""
    progress.step("descent ratios")
    out: dict[int | str, list[float]] = {K: [] for K in Ks}
    path = base["path"][:-1]
    steps = torch.logspace(0, math.log10(len(path)), RATIO_POINTS).long().unique() - 1
    for lam in path[steps]:
        exact = as_tensor(core.hypergradient(problem, lam, dyn, core.Full()).grad)
        if float(exact.norm()) < 1e-8:  # the ratio is noise once d_λ f vanishes
            break
        for K in Ks:
            h = core.hypergradient(problem, lam, dyn, core.Truncated(K)).grad
            out[K].append(core.compare(h, exact)["descent_ratio"])
    out["iteration"] = (steps[: len(out[Ks[0]])] + 1).tolist()
    return out


def _optimum(problem: Toy, start, dyn, iterations: int) -> torch.Tensor:
    """The red X of Figure 3: where full RMD (exact gradients) converges on ``f~``."""
    return as_tensor(core.fit(
        problem, start, dyn, core.Full(), iterations=4 * iterations, optimizer="adam", lr=0.05,
    ).hparams)  # fmt: skip


def _prop31(out: Path, dyn, progress) -> list[list]:
    """Figure 1: ``f`` over ``w``, and ``||h_{T-K} - d_λ f||`` against the bound (10)."""
    import matplotlib.pyplot as plt

    progress.step("Prop. 3.1")
    toy, lam = Toy(), torch.tensor([1.0, 1.0], dtype=F64)
    exact = as_tensor(core.hypergradient(toy, lam, dyn, core.Full()).grad)
    Ks, errs, bounds = list(range(1, T + 1)), [], []
    for K in Ks:
        h = core.hypergradient(toy, lam, dyn, core.Truncated(K))
        errs.append(float((as_tensor(h.grad) - exact).norm()))
        bounds.append(core.prop31_bound(K, GAMMA, toy.alpha, h.info["grad_w_norm"], M_B=GAMMA))

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    g = torch.linspace(-3, 3, 241, dtype=F64)
    W1, W2 = torch.meshgrid(g, g, indexing="xy")
    W = torch.stack([W1, W2], -1)
    F = (W**2).sum(-1) + 10 * (torch.sin(W) ** 2).sum(-1)
    cs = a.contourf(W1, W2, F, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=a)
    a.set(title=r"$f(w) = \|w\|^2 + 10\|\sin w\|^2$", xlabel="$w_1$", ylabel="$w_2$")
    b.semilogy(Ks, errs, label=r"$\|h_{T-K} - d_\lambda f\|$")
    b.semilogy(Ks, bounds, "--", label="bound (10)")
    b.set(title=r"Prop. 3.1 at $\lambda = (1, 1)$", xlabel="K")
    b.legend()
    savefig(fig, out / "fig1_prop31.png")
    return [
        [K, f"{e:.3e}", f"{b:.3e}", "yes" if e <= b else "NO"]
        for K in (1, 2, 5, 10, 25, 50, 75, 100)
        for e, b in [(errs[K - 1], bounds[K - 1])]
    ]  # fmt: skip


def _figure2(out: Path, ratios, runs, Ks) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, biased in zip(axes, (False, True)):
        for K in Ks:
            ax.plot(ratios[biased]["iteration"], ratios[biased][K], ".-", label=f"K={K}")
        ax.axhline(0, color="k", lw=0.5)
        name = r"$\tilde f$" if biased else "$f$"
        ax.set(title=f"{name}: " + r"$h_{T-K}^\top d_\lambda f / \|d_\lambda f\|^2$"
               f" along the K={Ks[0]} path", xlabel="hyper-iteration", xscale="log")  # fmt: skip
        ax.legend()
    savefig(fig, out / "fig2_descent_ratio.png")


def _trajectories(path: Path, problem: Toy, runs, biased: bool, Ks, optimum) -> None:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    g1, g2 = torch.linspace(-0.6, 1.8, 161, dtype=F64), torch.linspace(-0.6, 1.8, 161, dtype=F64)
    L1, L2 = torch.meshgrid(g1, g2, indexing="xy")
    a.contour(L1, L2, _upper_objective(problem, torch.stack([L1, L2], -1)), levels=30,
              cmap="Greys", linewidths=0.6)  # fmt: skip
    for K in Ks:
        p = runs[biased, K]["path"]
        a.plot(p[:, 0], p[:, 1], ".-", ms=2, lw=0.8, label=f"K={K}")
    if optimum is not None:
        a.plot(*optimum.tolist(), "rx", ms=12, mew=3, label="optimal λ")
    a.set(xlabel=r"$\lambda_1$", ylabel=r"$\lambda_2$", title="trajectories of $\\lambda_\\tau$")
    a.legend(fontsize=8)
    for K in Ks:
        it, norm = _measured(runs[biased, K]["history"])
        b.semilogy(it, norm, label=f"K={K}")
    title = "biased convergence on $\\tilde f$" if biased else "convergence on $f$"
    b.set(xlabel="hyper-iteration", ylabel=r"$\|d_\lambda f\|$", xscale="log", title=title)
    b.legend(fontsize=8)
    savefig(fig, path)


def _measured(history: dict) -> tuple[list[int], list[float]]:
    """The iterations where the exact hypergradient was computed, and its norm there."""
    pairs = [(i, n) for i, n in zip(history["iteration"], history["exact_norm"]) if n == n]
    return [i for i, _ in pairs], [n for _, n in pairs]


def _upper_objective(problem: Toy, lam: torch.Tensor) -> torch.Tensor:
    """``F(λ) = f(w_T(λ), λ)`` on a grid, from the closed form ``w_T = C w_0 + (I - C) λ``."""
    C = (1 - GAMMA * torch.tensor([1.0, 0.5], dtype=F64)) ** T
    w = C * torch.tensor(problem.w0, dtype=F64) + (1 - C) * lam
    F = (w**2).sum(-1) + 10 * (torch.sin(w) ** 2).sum(-1)
    if problem.biased:
        F = F + 5 * ((lam - torch.tensor(problem.target, dtype=F64)) ** 2).sum(-1)
    return F


def _report(args, Ks, bound_rows, runs, ratios, optimum, elapsed) -> str:
    def final_rows(biased):
        rows = []
        for K in Ks:
            r = runs[biased, K]
            hist = r["history"]
            lam = r["final"]
            ms = 1e3 * sum(hist["time_s"]) / len(hist["time_s"])
            rows.append([
                K, f"({lam[0]:.4f}, {lam[1]:.4f})", f"{_measured(hist)[1][-1]:.2e}",
                f"{hist['outer_loss'][-1]:.6f}", f"{ms:.2f}",
            ])  # fmt: skip
        return rows

    def ratio_rows(biased):
        return [
            [K, f"{min(ratios[biased][K]):.3f}" if ratios[biased][K] else "n/a",
             f"{sum(v < 0 for v in ratios[biased][K])}/{len(ratios[biased][K])}"]
            for K in Ks
        ]  # fmt: skip

    head = ["K", "final λ", "‖d_λ f‖ at the end", "upper loss", "ms / hyper-iteration"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Toy problem (Section 4.1), reproduced

Command: `bilevel reproduce toy --out {args.out} --K {" ".join(map(str, Ks))} \
--iterations {args.iterations} --start {args.start[0]} {args.start[1]}`
Run {now} on {platform.machine()} ({torch.get_num_threads()} torch threads), torch \
{torch.__version__}, float64, in {elapsed:.1f} s.

Setup as in the paper: `G = diag(1, 1/2)`, `w_0 = (2, 2)`, T = {T} steps of gradient descent
with γ = {GAMMA}; outer loop SGD with η_τ = η_0/√τ, η_0 chosen so the first update has norm 0.6
(footnote 4); {args.iterations} hyper-iterations from λ_1 = ({args.start[0]}, {args.start[1]}).
`‖d_λ f‖` is the exact hypergradient (full RMD), computed every {EXACT_EVERY} iterates.

## Figure 1: Prop. 3.1 at λ = (1, 1) (`fig1_prop31.png`)

α = 1/2, M_B = γ; the bound is (10): (1-γα)^K/(γα) ‖∇f‖ M_B.

{markdown_table(["K", "‖h_(T-K) - d_λ f‖", "bound (10)", "holds"], bound_rows)}

## Figure 4: exact convergence on f with K-RMD (`fig4_convergence.png`)

Theorem 3.4 applies (∇_λ f = 0): every K, even K = 1, drives ‖d_λ f‖ to zero. The limit is
offset from the origin because T steps do not solve the inner problem exactly.

{markdown_table(head, final_rows(False))}

## Figure 3: biased convergence on f~ = f + 5‖λ - (1, 0)‖² (`fig3_biased.png`)

Assumption 3 of Theorem 3.4 fails; K-RMD stalls at a biased point whose distance from
stationarity shrinks quickly with K. Optimal λ (full RMD with Adam, {4 * args.iterations}
iterations): ({optimum[0]:.4f}, {optimum[1]:.4f}).

{markdown_table(head, final_rows(True))}

## Figure 2: descent ratio h_(T-K)ᵀ d_λ f / ‖d_λ f‖² (`fig2_descent_ratio.png`)

Evaluated at {RATIO_POINTS} log-spaced iterates of the K = {Ks[0]} run, until ‖d_λ f‖ < 1e-8.
Lemma 3.2 keeps it away from zero on f. On f~ nothing does: along the 1-RMD path it decays
to 0, since h_(T-1) vanishes at a point where d_λ f does not (the paper's Figure 2 shows it
turning negative).

f:

{markdown_table(["K", "min ratio", "negative"], ratio_rows(False))}

f~:

{markdown_table(["K", "min ratio", "negative"], ratio_rows(True))}
"""
