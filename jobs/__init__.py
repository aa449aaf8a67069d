"""The job domain shared by the API and the workers: spec, tables, queries.

Nothing here imports torch or a web framework.
"""

from jobs.spec import JobSpec, check_spec, field_errors, parse_spec

__all__ = ["JobSpec", "check_spec", "field_errors", "parse_spec"]
