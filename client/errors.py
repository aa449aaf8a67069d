"""The client's errors: the server said no (:class:`ApiError`), or could not be reached.

```
ClientError
 +-- MissingKey          no key given, none in the environment, no key file (also a ValueError)
 +-- ServiceUnreachable  no answer after the retries (a connection error, a timeout)
 +-- ApiError            an answer with a 4xx or 5xx status, its problem document parsed
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ApiError", "ClientError", "FieldError", "MissingKey", "ServiceUnreachable"]


class ClientError(Exception):
    """Base of the client's errors."""


class MissingKey(ClientError, ValueError):
    """No API key: none passed, none in ``BILEVEL_API_KEY``, no embedded key file.

    Attributes:
        key_file: the embedded server's key file that was looked for.
    """

    def __init__(self, message: str, key_file: Path):
        super().__init__(message)
        self.key_file = key_file


class ServiceUnreachable(ClientError, ConnectionError):
    """The service did not answer (after the retries): the URL is wrong or it is down."""


class FieldError(dict[str, Any]):
    """One invalid field of a request as the server names it: ``field``, ``message``, ..."""

    @property
    def field(self) -> str:
        """The dotted path of the field, e.g. ``outer.iterations``."""
        return str(self.get("field", ""))

    @property
    def message(self) -> str:
        """What is wrong with it."""
        return str(self.get("message", ""))


class ApiError(ClientError):
    """The server answered with an error status and (usually) an RFC 9457 problem document.

    Attributes:
        status: the HTTP status.
        problem: the problem document (``type``, ``title``, ``detail``, ...), or ``{}``.
        errors: the invalid fields of a 422, each a :class:`FieldError`.
    """

    def __init__(self, status: int, problem: dict[str, Any], text: str = ""):
        self.status = status
        self.problem = problem
        self.errors = [FieldError(e) for e in problem.get("errors") or []]
        super().__init__(f"HTTP {status}: {self.describe() or text}")

    @property
    def slug(self) -> str:
        """The last part of the problem's ``type`` (``not-found``, ``quota-exceeded``...)."""
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]

    def describe(self) -> str:
        """The problem as one line: its fields' errors (``field: message; ...``), else detail."""
        fields = [f"{e.field}: {e.message}" for e in self.errors]
        return "; ".join(fields) if fields else str(self.problem.get("detail", ""))
