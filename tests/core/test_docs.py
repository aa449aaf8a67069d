"""The examples in the core's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import core


def _modules():
    for info in pkgutil.walk_packages(core.__path__, prefix="core."):
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert failures == 0


def test_every_public_symbol_has_a_docstring():
    missing = [name for name in core.__all__ if not getattr(core, name).__doc__]
    assert not missing, missing
