"""An example ``bilevel.problems`` plugin: the ``digits_mlp`` problem kind.

:mod:`bilevel_digits_mlp.spec` holds the options (no torch: the API imports it);
:mod:`bilevel_digits_mlp.problem` the problem itself (the worker imports it).
"""
