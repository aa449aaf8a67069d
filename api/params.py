"""The rule every integer query parameter follows: decimal digits, an optional ``-``.

pydantic reads a query string's integer the lax way, as Python's ``int()`` does and more:
``+9``, `` 9``, ``1_0`` and ``9.0`` all pass as numbers. A query parameter here is written
one way (``limit=9``): anything else is refused with the 422 problem of every bad
parameter, naming it (``query.limit``) and echoing the value. A leading ``-`` is read, so a
negative number is refused by the parameter's range, which the problem names.

Every ``int`` query parameter carries :data:`Digits` after its ``Query``
(``Annotated[int, Query(ge=1, le=200), Digits]``: in that order the bounds stay the
integer's, so the OpenAPI document keeps them as ``minimum`` and ``maximum``);
``tests/api/test_query_ints.py`` checks that none is missing it.
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator

__all__ = ["Digits"]

_DECIMAL = re.compile(r"-?[0-9]+")


def _decimal(value: object) -> object:
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError(f"must be decimal digits 0-9 (no '+', space, '_' or '.'), got {value!r}")
    return value


#: the validator of an integer query parameter (before pydantic's own, lax, reading)
Digits = BeforeValidator(_decimal)
