"""Plots for notebooks: what a job learned (:mod:`viz.learned`), with numpy and matplotlib."""

from viz.learned import (
    plot_example_weights,
    plot_layer_decays,
    plot_learned,
    plot_paths,
    plot_penalties,
)

__all__ = [
    "plot_example_weights",
    "plot_layer_decays",
    "plot_learned",
    "plot_paths",
    "plot_penalties",
]
