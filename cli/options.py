"""Options shared through argparse parent parsers.

A command group's options (``bilevel keys --state-dir DIR``) are accepted after its action
too (``bilevel keys create --state-dir DIR``): the group's parser and each action's parser
get them from a parent parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["group_options"]


def group_options(
    add: Callable[[argparse.ArgumentParser], None],
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Two parent parsers holding the options ``add`` adds: one for a group, one for its
    actions.

    argparse parses an action in a namespace of its own and copies every attribute of it over
    the group's, defaults included; so the actions' copies have no defaults (``SUPPRESS``),
    and an option given before the action keeps its value unless it is given again after it.
    """
    group = argparse.ArgumentParser(add_help=False)
    add(group)
    action = argparse.ArgumentParser(add_help=False)
    add(action)
    for a in action._actions:
        a.default = argparse.SUPPRESS
    return group, action
