"""Where the service is and which key to use (environment ``BILEVEL_URL``, ``BILEVEL_API_KEY``).

Only pydantic and pydantic-settings are imported: a client loads neither the server's
settings (``jobs.settings`` imports SQLAlchemy) nor the API's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_URL", "KEY_FILE", "ClientSettings"]

DEFAULT_URL = "http://127.0.0.1:8000"
# the embedded owner's key, written (0600) by the first `bilevel serve` under the state dir
KEY_FILE = "api_key"


class ClientSettings(BaseSettings):
    """Where the service is and which key to use; arguments and flags override each field.

    Attributes:
        url: the service's base URL (``BILEVEL_URL``).
        api_key: the key (``BILEVEL_API_KEY``); without one, the embedded server's key file.
        state_dir: the embedded server's state directory (``BILEVEL_STATE_DIR``), where
            ``bilevel serve`` writes the owner's key to ``<state_dir>/api_key``.
    """

    model_config = SettingsConfigDict(env_prefix="BILEVEL_", extra="ignore")

    url: str = DEFAULT_URL
    api_key: SecretStr | None = None
    # the same variables and default as the server's StoreSettings.state_dir: a client on the
    # server's machine finds the embedded key file without being told where it is
    state_dir: Path = Field(
        Path("~/.local/share/bilevel"),
        validation_alias=AliasChoices("BILEVEL_STATE_DIR", "STATE_DIR"),
    )

    @property
    def key_file(self) -> Path:
        """The embedded owner's key file under the state directory."""
        return self.state_dir.expanduser().resolve() / KEY_FILE

    def resolved_key(self) -> str | None:
        """``api_key``, else the key file's key when there is one, else ``None``."""
        if self.api_key is not None and self.api_key.get_secret_value():
            return self.api_key.get_secret_value()
        if self.key_file.exists():
            return self.key_file.read_text().strip() or None
        return None
