"""Secrets at rest: values the service must read back (webhook signing secrets), sealed.

An API key is stored as a keyed hash (``jobs.keys``): the service only ever checks it. A
webhook's signing secret must be read back to sign every delivery, so it cannot be hashed;
it is encrypted instead (Fernet: AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a
key derived from the server secret (``BILEVEL_KEY_SECRET``) with HKDF-SHA256. A copy of the
database alone then holds no usable secret, as it holds no usable API key.

Each sealed value records which server secret sealed it (``jobs.keys.secret_id``), so a
rotation (``BILEVEL_KEY_SECRET_PREVIOUS``) opens old values with the previous secret while the
workers reseal them under the new one (``jobs.store.repo.webhooks.reseal_webhook_secrets``).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealError", "seal", "unseal"]

# HKDF's info: a key for this purpose only, unrelated to the HMAC the secret keys API keys with
_INFO = b"bilevel webhook secrets v1"


class SealError(ValueError):
    """A sealed value that the given server secret cannot open (another secret, or altered)."""


def _fernet(server_secret: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(server_secret)
    return Fernet(base64.urlsafe_b64encode(key))


def seal(plaintext: str, server_secret: bytes) -> str:
    """``plaintext`` encrypted and authenticated under a key derived from ``server_secret``."""
    return _fernet(server_secret).encrypt(plaintext.encode()).decode("ascii")


def unseal(token: str, server_secret: bytes) -> str:
    """The plaintext :func:`seal` sealed under ``server_secret``.

    Raises:
        SealError: ``token`` was sealed under another secret, or altered.
    """
    try:
        return _fernet(server_secret).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise SealError(
            "a sealed secret does not open under this server secret (BILEVEL_KEY_SECRET): "
            "sealed under another one, or altered"
        ) from None
