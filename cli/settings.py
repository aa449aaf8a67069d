"""The client commands' settings: the client library's (:mod:`client.settings`), re-exported
for the commands that run the server (``serve`` writes the key file these read)."""

from __future__ import annotations

from client.settings import DEFAULT_URL, KEY_FILE, ClientSettings

__all__ = ["DEFAULT_URL", "KEY_FILE", "ClientSettings"]
