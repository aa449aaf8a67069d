"""The shared argument checks of core.validate: what they accept, and messages that echo."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import ConfigurationError
from core.validate import finite_positive, integer_at_least, scalar_loss


def test_scalar_loss_reshapes_one_element_to_0d_and_keeps_the_graph():
    x = torch.ones(1, requires_grad=True)
    loss = scalar_loss(2 * x, "inner")
    assert loss.shape == ()
    assert loss.requires_grad


@pytest.mark.parametrize(
    ("loss", "shown"), [(torch.ones(3), r"\(3,\)"), (1.0, "float"), (None, "NoneType")]
)
def test_scalar_loss_rejects_anything_else_naming_the_loss_and_what_came(loss, shown):
    with pytest.raises(
        ConfigurationError, match=f"outer_loss must return a scalar tensor, got {shown}"
    ):
        scalar_loss(loss, "outer")


@pytest.mark.parametrize("value", [0, -1, 1.0, True, "2", None])
def test_integer_at_least_rejects_non_integers_bools_and_small_values(value):
    with pytest.raises(ConfigurationError, match=rf"steps must be an integer >= 1, got {value!r}"):
        integer_at_least(value, "steps")


def test_integer_at_least_accepts_the_minimum_and_none_when_optional():
    integer_at_least(0, "exact_every", minimum=0)
    integer_at_least(None, "chunk", optional=True)
    with pytest.raises(ConfigurationError, match="chunk must be an integer >= 1 or None, got 0"):
        integer_at_least(0, "chunk", optional=True)


@pytest.mark.parametrize("value", [0, -0.5, math.inf, math.nan, "0.1", None])
def test_finite_positive_rejects_zero_negative_non_finite_and_non_numbers(value):
    with pytest.raises(ConfigurationError, match="lr must be a finite number > 0, got"):
        finite_positive(value, "lr")


def test_finite_positive_accepts_none_only_when_optional():
    finite_positive(0.1, "lr")
    finite_positive(None, "alpha", optional=True)
