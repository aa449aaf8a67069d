"""Teams, API keys and the per-team counts the quotas check."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from jobs import keys
from jobs.status import ACTIVE, AuditAction, AuditTarget, JobStatus, KeyScope
from jobs.store.models import ApiKey, Job, Team, utcnow
from jobs.store.repo.audit import Actor, record_event
from jobs.store.repo.rows import rows_changed

# -- teams, keys and quotas ----------------------------------------------------------------


def ensure_team(session: Session, name: str) -> Team:
    """The team called ``name``, created if missing."""
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def any_team_exists(session: Session) -> bool:
    """Whether the store holds a team at all (an embedded store's first start has none)."""
    return session.scalar(select(Team.id).limit(1)) is not None


@dataclass(frozen=True)
class TeamRef:
    """A team's id and name, detached from any session (a principal outlives its session)."""

    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class Principal:
    """Who an authenticated request is: the key's team, prefix and scope (never the key)."""

    team: TeamRef
    key_id: uuid.UUID
    prefix: str
    scope: str
    name: str = ""  # the key's name, as its team gave it (audit events record it)
    rehashed: bool = False  # the row was rewritten under the current secret: the caller commits

    @property
    def admin(self) -> bool:
        """Whether the key may manage its team's keys (an operator key may too)."""
        return self.scope in (KeyScope.ADMIN, KeyScope.OPERATOR)

    @property
    def operator(self) -> bool:
        """Whether the key runs the pool: every team's weights and limits, ``/metrics``."""
        return self.scope == KeyScope.OPERATOR


def create_api_key(
    session: Session,
    team: Team | TeamRef,
    name: str = "",
    *,
    secret: bytes,
    actor: Actor,
    scope: str = KeyScope.TEAM,
) -> tuple[ApiKey, str]:
    """A new key for ``team``, audited as ``key.create`` by ``actor``.

    The plaintext is returned once and never stored.

    Raises:
        ValueError: ``scope`` is not a :class:`~jobs.status.KeyScope`.
    """
    scope = _scope(scope)
    prefix, key = keys.new_key()
    row = ApiKey(
        team_id=team.id,
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(key, keys.HMAC_SHA256, secret),
        hash_scheme=keys.HMAC_SHA256,
        secret_id=keys.secret_id(secret),
        scope=scope,
    )
    session.add(row)
    session.flush()
    record_event(session, actor, AuditAction.KEY_CREATE, AuditTarget.KEY, prefix,
                 target_team_id=team.id, after={"name": name, "scope": scope})  # fmt: skip
    return row, key


def _scope(scope: str) -> KeyScope:
    try:
        return KeyScope(scope)
    except ValueError:
        names = [str(s) for s in KeyScope]
        raise ValueError(f"scope must be one of {names}, got {scope!r}") from None


# compared against when no row matches, so that a miss costs about what a hit does
_DUMMY_HASH = "0" * 64


def verify_key(
    session: Session, key: str, *, secret: bytes, previous: bytes | None = None
) -> Principal | None:
    """The principal of an unrevoked ``key``, else ``None`` (constant-time comparison).

    One query reads the key's row and its team. The row's ``secret_id`` says which secret its
    HMAC is keyed with: ``secret``, or ``previous`` during a rotation (a row from before
    ``secret_id`` existed is tried with both). A row hashed with plain SHA-256 or under
    ``previous``, or without ``secret_id``, is accepted and rewritten as HMAC-SHA256 under
    ``secret`` in the session (flushed, not committed: ``Principal.rehashed`` tells the
    caller to commit).
    """
    prefix = keys.split_key(key)
    row = None
    if prefix:
        row = session.execute(
            select(ApiKey.id, ApiKey.prefix, ApiKey.name, ApiKey.key_hash, ApiKey.hash_scheme,
                   ApiKey.scope, ApiKey.secret_id, ApiKey.revoked_at, Team.id.label("team_id"),
                   Team.name.label("team_name"))
            .join(Team, Team.id == ApiKey.team_id)
            .where(ApiKey.prefix == prefix)
        ).first()  # fmt: skip
    scheme = row.hash_scheme if row is not None else keys.HMAC_SHA256
    expected = row.key_hash if row is not None else _DUMMY_HASH
    current_id = keys.secret_id(secret)
    candidates = [secret]  # the secrets the row may be keyed with, most likely first
    if previous is not None and scheme == keys.HMAC_SHA256 and row is not None:
        if row.secret_id == keys.secret_id(previous):
            candidates = [previous]
        elif row.secret_id is None:
            candidates = [secret, previous]
    ok = any(hmac.compare_digest(expected, keys.hash_key(key, scheme, c)) for c in candidates)
    if row is None or not ok or row.revoked_at is not None:
        return None
    rehashed = False
    # the key is right: move its row to the current secret unless it is there already
    if scheme != keys.HMAC_SHA256 or row.secret_id != current_id:
        res = rows_changed(session,
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.key_hash == row.key_hash)
            .values(key_hash=keys.hash_key(key, keys.HMAC_SHA256, secret),
                    hash_scheme=keys.HMAC_SHA256, secret_id=current_id)
        )  # fmt: skip
        rehashed = res == 1
    return Principal(team=TeamRef(row.team_id, row.team_name), key_id=row.id, prefix=row.prefix,
                     scope=row.scope, name=row.name, rehashed=rehashed)  # fmt: skip


def authenticate(
    session: Session, key: str, *, secret: bytes, previous: bytes | None = None
) -> TeamRef | None:
    """The team owning an unrevoked ``key``, else ``None`` (see :func:`verify_key`)."""
    principal = verify_key(session, key, secret=secret, previous=previous)
    return None if principal is None else principal.team


def list_api_keys(
    session: Session, team_name: str | None = None, *, team_id: uuid.UUID | None = None
) -> list[tuple[ApiKey, str]]:
    """``(key, team name)`` pairs, oldest first, of one team (by name or id) or of all."""
    q = select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)
    if team_name is not None:
        q = q.where(Team.name == team_name)
    if team_id is not None:
        q = q.where(Team.id == team_id)
    return [(k, n) for k, n in session.execute(q.order_by(ApiKey.created_at, ApiKey.prefix))]


def get_api_key(
    session: Session, prefix: str, *, team_id: uuid.UUID | None = None
) -> ApiKey | None:
    """The key with ``prefix`` (of ``team_id`` only, when given), else ``None``."""
    q = select(ApiKey).where(ApiKey.prefix == prefix)
    if team_id is not None:
        q = q.where(ApiKey.team_id == team_id)
    return session.scalar(q)


class LastAdminKey(Exception):
    """Revoking this key would leave its team without an unrevoked ``admin`` key.

    Attributes:
        prefix: the key's prefix.
        team: the team's name.
    """

    def __init__(self, prefix: str, team: str):
        super().__init__(
            f"key {prefix} is team {team!r}'s last admin key; create another admin key "
            "first (bilevel keys create --admin)"
        )
        self.prefix = prefix
        self.team = team


def revoke_api_key(
    session: Session, prefix: str, *, actor: Actor, team_id: uuid.UUID | None = None
) -> bool:
    """Revoke the key with ``prefix`` (of ``team_id`` only, when given), audited.

    Recorded as ``key.revoke`` by ``actor``; a key revoked before stays revoked and is not
    audited again.

    The one place both the API and the CLI revoke through, so the team's last unrevoked
    admin key is refused whichever of them asks: without one nobody could manage the team's
    keys through the API again.

    Returns:
        ``False`` if there is no such unrevoked key.

    Raises:
        LastAdminKey: the key is its team's last unrevoked admin key.
    """
    row = get_api_key(session, prefix, team_id=team_id)
    if row is None or row.revoked_at is not None:
        return False
    if row.scope == KeyScope.ADMIN:
        # serialised per team (until commit): two revokes of its last two admin keys cannot
        # both see the other one still active
        lock_team(session, row.team_id)
        if count_admin_keys(session, row.team_id) <= 1:
            team = session.scalar(select(Team.name).where(Team.id == row.team_id))
            raise LastAdminKey(prefix, team or str(row.team_id))
    q = update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    if team_id is not None:
        q = q.where(ApiKey.team_id == team_id)
    if rows_changed(session, q.values(revoked_at=utcnow())) != 1:
        return False
    record_event(session, actor, AuditAction.KEY_REVOKE, AuditTarget.KEY, prefix,
                 target_team_id=row.team_id, before={"revoked_at": None},
                 after={"revoked": True})  # fmt: skip
    return True


def count_admin_keys(session: Session, team_id: uuid.UUID) -> int:
    """How many unrevoked ``admin`` keys the team has (its last one may not be revoked)."""
    return int(
        session.scalar(
            select(func.count()).where(
                ApiKey.team_id == team_id,
                ApiKey.scope == KeyScope.ADMIN,
                ApiKey.revoked_at.is_(None),
            )
        )
        or 0
    )


def set_api_key_scope(session: Session, prefix: str, scope: str) -> bool:
    """Give the key with ``prefix`` another scope; ``False`` if there is no such key.

    Not audited: only the embedded store's start uses it, to promote its owner's key file
    from before scopes existed.
    """
    scope = _scope(scope)
    res = rows_changed(session, update(ApiKey).where(ApiKey.prefix == prefix).values(scope=scope))
    return res == 1


def count_active_jobs(session: Session, team_id: uuid.UUID) -> dict[str, int]:
    """The team's job counts by active status, queued and running (what the quotas check)."""
    rows = session.execute(
        select(Job.status, func.count())
        .where(Job.team_id == team_id, Job.status.in_(ACTIVE))
        .group_by(Job.status)
    ).all()
    counts: dict[str, int] = dict.fromkeys(ACTIVE, 0)
    counts.update({JobStatus(status): int(n) for status, n in rows})
    return counts


def lock_team(session: Session, team_id: uuid.UUID) -> None:
    """Serialise this team's submits and claims until commit (PostgreSQL).

    Concurrent submits and claims of one team then count in turn, so quotas hold under races.
    """
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
