"""The job domain shared by the API and the workers: spec, tables, queries.

Nothing here imports torch or a web framework. The spec's names load on first use: a
plugin's options module imports :mod:`jobs.plugins`, and importing the spec would discover
the plugins (that module among them) while it is still half imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.specs.job import JobSpec, check_spec, field_errors, parse_spec

__all__ = ["JobSpec", "check_spec", "field_errors", "parse_spec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from jobs.specs import job as spec  # on first use: see the module docstring

        return getattr(spec, name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
