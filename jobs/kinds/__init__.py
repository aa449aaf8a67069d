"""Problem kinds: one module per built-in kind, the plugins' adapter, and the registry.

Each kind is a :class:`jobs.kinds.base.ProblemKind`: its options, its factory's dotted path
and its admission hooks. :mod:`jobs.kinds.registry` holds every kind of this process, built
in or from an installed plugin (``bilevel.problems``); it is a module of its own because the
plugins' options modules import :mod:`jobs.plugins`, which imports :mod:`jobs.kinds.base`,
while discovery imports them: this package itself imports nothing.
"""
