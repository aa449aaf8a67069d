"""A one-line progress bar on stderr, for ``bilevel watch`` and ``bilevel run``: the client
library's (:class:`client.progress.Bar`)."""

from __future__ import annotations

from client.progress import Bar

__all__ = ["Bar"]
