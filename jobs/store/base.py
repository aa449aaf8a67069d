"""The tables' declarative base, its constraint names, and the column types they share.

Timestamps are stored as naive UTC and handed back timezone-aware, the same on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

__all__ = ["BIG_ID", "JSON_VALUE", "Base", "UTCDateTime", "check_in", "naive_utc", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: what every timestamp column holds."""
    return datetime.now(UTC)


def naive_utc(value: datetime) -> datetime:
    """What a :class:`UTCDateTime` column stores for the aware ``value``: naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC in the column."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Aware UTC in, naive UTC to the column; a naive datetime is refused."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Naive UTC from the column, aware UTC out."""
        return None if value is None else value.replace(tzinfo=UTC)


#: A JSON document: JSONB on PostgreSQL, JSON text elsewhere.
JSON_VALUE = JSON().with_variant(JSONB(), "postgresql")
#: A 64-bit auto-increment id (SQLite only auto-increments an INTEGER PRIMARY KEY).
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


def check_in(column: str, values: tuple[str, ...]) -> str:
    """The CHECK text ``column IN ('a', 'b')`` for an enum's values, in the enum's order."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The tables' base: constraint names follow one convention, so migrations can name them."""

    metadata = MetaData(naming_convention=_NAMING)
