"""The actions an audit event records (no SQLAlchemy here: the CLI's ``audit`` reads them).

``access.denied`` is a refused cross-team access (the API answered 404); the others are
``<object>.<verb>`` of an admin action.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ACTIONS", "AuditAction"]

AuditAction = Literal[
    "access.denied",
    "dataset.delete",
    "key.create",
    "key.revoke",
    "team.update",
    "webhook.create",
    "webhook.delete",
]
#: Every action an event may record.
ACTIONS: tuple[str, ...] = get_args(AuditAction)
