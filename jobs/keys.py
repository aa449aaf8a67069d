"""API key hashing and the server secret it is keyed with.

Keys look like ``blv_<prefix>_<secret part>``: the prefix is stored in clear so that a key can
be found, listed and revoked; the whole key is stored only as HMAC-SHA256 under a server
secret (``BILEVEL_KEY_SECRET``), so a copy of the database alone lets nobody check guesses
offline. Rows written before the secret existed hold a plain SHA-256 (scheme ``sha256``);
they are accepted once and rehashed, since the plaintext is at hand at that moment.

Where the secret comes from (:func:`load_key_secret`):

1. ``BILEVEL_KEY_SECRET`` (at least 32 characters);
2. else the file ``BILEVEL_KEY_SECRET_FILE`` (a Docker or Kubernetes secret), which must exist;
3. else, in the embedded mode only, ``<state_dir>/key_secret``: generated on first use with
   mode 0600. The distributed mode refuses to guess: API processes on several machines must
   share one secret, and a secret generated on one of them would lock the others out.

Rotating the secret (:func:`load_previous_key_secret`): start every API process with the new
``BILEVEL_KEY_SECRET`` and the old one in ``BILEVEL_KEY_SECRET_PREVIOUS`` (or
``BILEVEL_KEY_SECRET_PREVIOUS_FILE``). A key still hashed under the old secret verifies and is
rehashed under the new one on its next use; each row records which secret it is hashed under
(``api_keys.secret_id``, :func:`secret_id`: a keyed fingerprint, not the secret), so
``bilevel keys list`` shows the keys not yet moved. Once none are left, drop the previous
secret. Changing the secret without naming the old one invalidates every key.

:class:`KeyCache` lets an API process skip the store for a key it verified less than
``ttl_s`` seconds ago. It is keyed by the key's HMAC digest, never the plaintext, so a memory
dump of the cache is no better than a copy of the ``api_keys`` table. The price is the
revocation bound: a key revoked elsewhere (another API process, ``bilevel keys revoke``)
keeps working in this process for at most ``ttl_s`` seconds; the process that revokes it
forgets it at once (:meth:`KeyCache.forget_prefix`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from jobs.settings import StoreSettings

__all__ = [
    "HMAC_SHA256",
    "KEY_PREFIX",
    "MIN_SECRET_CHARS",
    "SECRET_FILE",
    "SHA256",
    "KeyCache",
    "KeySecretError",
    "hash_key",
    "load_key_secret",
    "load_previous_key_secret",
    "new_key",
    "secret_id",
    "split_key",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "blv_"
SECRET_FILE = "key_secret"
MIN_SECRET_CHARS = 32
# hash schemes of the api_keys.hash_scheme column
SHA256, HMAC_SHA256 = "sha256", "hmac-sha256"


class KeySecretError(ValueError):
    """No usable server secret for hashing API keys."""


def new_key() -> tuple[str, str]:
    """A fresh ``(prefix, key)``: 32 bits of visible prefix, 256 bits of secret."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def split_key(key: str) -> str | None:
    """The prefix of a well-formed key, else ``None``."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    return prefix if 0 < len(prefix) <= 16 else None


def hash_key(key: str, scheme: str, secret: bytes) -> str:
    """The stored form of ``key`` under ``scheme`` (64 hex digits either way)."""
    if scheme == HMAC_SHA256:
        return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
    if scheme == SHA256:
        return hashlib.sha256(key.encode()).hexdigest()
    raise ValueError(f"unknown key hash scheme {scheme!r}; known: {SHA256}, {HMAC_SHA256}")


def secret_id(secret: bytes) -> str:
    """A public fingerprint of ``secret`` (16 hex digits) naming it in ``api_keys.secret_id``.

    Keyed by the secret itself, so it reveals nothing a guess of the secret could be checked
    against more cheaply than a stored key hash.
    """
    return hmac.new(secret, b"bilevel api key secret id", hashlib.sha256).hexdigest()[:16]


T = TypeVar("T")


class KeyCache(Generic[T]):
    """Verified keys for at most ``ttl_s`` seconds, at most ``max_entries``, LRU out.

    Keys are HMAC digests (:func:`hash_key` under ``HMAC_SHA256``) and values are what the
    verification found (a principal); only successes are cached, so a wrong key always
    reaches the store's constant-time check. ``ttl_s = 0`` turns the cache off.

    Each entry lives a random time between ``(1 - jitter) * ttl_s`` and ``ttl_s``: keys
    verified together (every dashboard of a team opened at once, or every client after a
    restart) would otherwise all expire in the same instant and be verified again together,
    a burst of queries every ``ttl_s`` that measured as the slowest polls of a load run.
    A revocation still takes effect within ``ttl_s``.
    """

    def __init__(self, ttl_s: float, max_entries: int = 1024, *,
                 clock: Callable[[], float] = time.monotonic, jitter: float = 0.5,
                 rng: random.Random | None = None):  # fmt: skip
        if ttl_s < 0 or max_entries < 1:
            raise ValueError(f"need ttl_s >= 0 and max_entries >= 1, got {ttl_s}, {max_entries}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"need 0 <= jitter <= 1, got {jitter}")
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self.jitter, self._rng = jitter, rng or random.Random()
        self._entries: OrderedDict[str, tuple[float, str, T]] = OrderedDict()
        self._lock = threading.Lock()  # API routes run in a thread pool

    def get(self, digest: str) -> T | None:
        """The value cached for ``digest``, unless missing or older than ``ttl_s``."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[2]

    def put(self, digest: str, prefix: str, value: T) -> None:
        """Remember ``value`` for ``digest`` (the key with ``prefix``), ``ttl_s`` at most."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            life = self.ttl_s * (1.0 - self.jitter * self._rng.random())
            self._entries[digest] = (self.clock() + life, prefix, value)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget_prefix(self, prefix: str) -> None:
        """Drop the key with ``prefix`` (revoked, or its scope changed) from this process."""
        with self._lock:
            for digest in [d for d, e in self._entries.items() if e[1] == prefix]:
                del self._entries[digest]

    def clear(self) -> None:
        """Forget every key this process verified."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def load_key_secret(settings: StoreSettings) -> bytes:
    """The server secret for key hashes, from the environment, a file, or generated.

    Raises:
        KeySecretError: too short, an unreadable file, or the distributed mode without
            ``BILEVEL_KEY_SECRET`` / ``BILEVEL_KEY_SECRET_FILE``.
    """
    if settings.key_secret is not None and settings.key_secret.get_secret_value():
        return _checked(settings.key_secret.get_secret_value(), "BILEVEL_KEY_SECRET")
    path = settings.key_secret_file
    if path is None:
        if not settings.embedded:
            raise KeySecretError(
                "the distributed mode (DATABASE_URL set) needs BILEVEL_KEY_SECRET or "
                "BILEVEL_KEY_SECRET_FILE, shared by every API process: e.g. "
                "BILEVEL_KEY_SECRET=$(openssl rand -hex 32)"
            )
        path = settings.resolved_state_dir / SECRET_FILE
        _create_once(path)
    elif settings.embedded:
        _create_once(path.expanduser())
    try:
        text = path.expanduser().read_text().strip()
    except OSError as exc:
        raise KeySecretError(f"cannot read the key secret file {path}: {exc.strerror}") from None
    return _checked(text, str(path))


def load_previous_key_secret(settings: StoreSettings) -> bytes | None:
    """The secret being rotated out, if one is named; ``None`` outside a rotation.

    Raises:
        KeySecretError: too short, an unreadable file, or the same as the current secret.
    """
    if settings.key_secret_previous is not None:
        text, where = settings.key_secret_previous.get_secret_value(), "BILEVEL_KEY_SECRET_PREVIOUS"
    elif settings.key_secret_previous_file is not None:
        path = settings.key_secret_previous_file.expanduser()
        try:
            text, where = path.read_text().strip(), str(path)
        except OSError as exc:
            raise KeySecretError(
                f"cannot read the previous key secret file {path}: {exc.strerror}"
            ) from None
    else:
        return None
    if not text:
        return None
    previous = _checked(text, where)
    if hmac.compare_digest(previous, load_key_secret(settings)):
        raise KeySecretError(
            f"the previous key secret from {where} equals the current one: a rotation needs a "
            "new BILEVEL_KEY_SECRET"
        )
    return previous


def _checked(text: str, where: str) -> bytes:
    if len(text) < MIN_SECRET_CHARS:
        raise KeySecretError(
            f"the key secret from {where} must have at least {MIN_SECRET_CHARS} characters, "
            f"got {len(text)}"
        )
    return text.encode()


def _create_once(path: Path) -> None:
    """Write a random secret to ``path`` (0600) unless it exists; safe against a racing twin.

    The secret is written to a private temporary file and linked into place, so a concurrent
    reader never sees a half-written file and only one writer wins.
    """
    if path.exists():
        if path.stat().st_mode & 0o077:
            log.warning("key secret %s is readable by others; chmod 600 it", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        # another process may have made it first: then theirs is used
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
