"""What both clients share: where the service is and the key, from arguments or settings."""

from __future__ import annotations

from pathlib import Path

from client.errors import MissingKey
from client.settings import ClientSettings

__all__ = ["connection"]


def connection(
    url: str | None, api_key: str | None, state_dir: str | Path | None
) -> tuple[str, str]:
    """The URL and key: the arguments over the environment's :class:`ClientSettings`.

    Raises:
        MissingKey: no key given, none in ``BILEVEL_API_KEY`` and no key file.
    """
    over: dict[str, object] = {}
    if url:
        over["url"] = url
    if api_key:
        over["api_key"] = api_key
    if state_dir:
        over["state_dir"] = Path(state_dir)
    settings = ClientSettings(**over)  # type: ignore[arg-type]
    key = settings.resolved_key()
    if not key:
        raise MissingKey(
            f"no API key: pass api_key=, set BILEVEL_API_KEY, or point state_dir= "
            f"(BILEVEL_STATE_DIR) at the embedded server's state directory; its key file "
            f"{settings.key_file} does not exist",
            settings.key_file,
        )
    return settings.url, key
