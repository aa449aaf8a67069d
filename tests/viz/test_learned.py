"""viz.learned draws the job's summary as it is: bar lengths, stacked bins, path lines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: before pyplot is imported

import matplotlib.pyplot as plt
import numpy as np
import pytest

import viz

EDGES = np.linspace(0, 1, 5).tolist()
LEARNED = {
    "kind": "feature_regularization",
    "penalties": {
        "per": "feature",
        "labels": ["bmi", "s5", "age"],
        "values": [3.0, 0.5, 0.01],
        "count": 3,
        "named": True,
    },
    "example_weights": {
        "edges": EDGES,
        "count": 10,
        "all": [4, 1, 2, 3],
        "mean": 0.4,
        "clean": [0, 1, 2, 3],
        "corrupted": [4, 0, 0, 0],
    },
    "layer_decays": {"labels": ["layer 1", "layer 2"], "values": [1e-3, 2e-3]},
    "paths": [
        {
            "key": "log_lr",
            "title": "step size",
            "log": True,
            "iteration": [1, 2, 3],
            "series": {"step size": [0.1, 0.2, 0.4]},
        }
    ],
}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_penalties_are_bars_in_the_listed_order_on_a_log_axis_past_two_decades():
    ax = viz.plot_penalties(LEARNED)
    assert [p.get_width() for p in ax.patches] == [3.0, 0.5, 0.01]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bmi", "s5", "age"]
    assert ax.get_xscale() == "log" and ax.yaxis_inverted()  # 3 / 0.01 = 300 > 100
    assert [p.get_width() for p in viz.plot_penalties(LEARNED, top=2).patches] == [3.0, 0.5]
    assert viz.plot_layer_decays(LEARNED).get_xscale() == "linear"  # a span of 2


def test_example_weights_stack_corrupted_on_clean_per_bin():
    ax = viz.plot_example_weights(LEARNED)
    clean, corrupted = ax.patches[:4], ax.patches[4:]
    assert [p.get_height() for p in clean] == [0, 1, 2, 3]
    assert [p.get_y() for p in corrupted] == [0, 1, 2, 3]  # on top of the clean ones
    assert [p.get_y() + p.get_height() for p in corrupted] == LEARNED["example_weights"]["all"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["clean", "corrupted"]


def test_paths_draw_each_series_and_the_figure_has_a_panel_per_part():
    (ax,) = viz.plot_paths(LEARNED)
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [1, 2, 3] and line.get_ydata().tolist() == [0.1, 0.2, 0.4]
    assert ax.get_yscale() == "log"
    fig = viz.plot_learned(LEARNED)
    assert len(fig.axes) == 4


def test_a_missing_part_and_bad_arguments_are_named():
    with pytest.raises(ValueError, match="this job's summary has no 'example_weights'"):
        viz.plot_example_weights({"kind": "toy"})
    with pytest.raises(ValueError, match="this job's summary has nothing to draw"):
        viz.plot_learned({"kind": "toy", "paths": []})
    with pytest.raises(ValueError, match="top must be >= 1, got 0"):
        viz.plot_penalties(LEARNED, top=0)
    assert viz.plot_paths({"kind": "toy"}) == []


def test_a_pydantic_model_of_the_summary_is_drawn_alike():
    from api.schemas.learned import LearnedPublic

    ax = viz.plot_penalties(LearnedPublic.model_validate(LEARNED))
    assert [p.get_width() for p in ax.patches] == [3.0, 0.5, 0.01]
