"""Settings from flags, the environment (``BACKFILL_*``) or ``backfill.toml``."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

STATE_DIR = Path(".backfill")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKFILL_", toml_file="backfill.toml", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{STATE_DIR / 'backfill.db'}")
    project_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 6789
    # The address people open the web page at (links in notifications); default http://host:port.
    public_url: str | None = None
    workers: int = 4
    lease_seconds: float = 30.0
    scheduler_interval_seconds: float = 1.0
    secret_key: str | None = None
    rate_limit: str = "1200/minute"
    max_log_bytes: int = 1_000_000
    log_level: str = "INFO"
    log_format: Literal["auto", "text", "json"] = "auto"
    """auto: human-readable lines on a terminal, JSON lines otherwise."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (pydantic-settings passes every source)
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # flags > environment > backfill.toml
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def resolved_secret(self) -> str:
        """The signing secret: configured, else generated once and kept in .backfill/secret."""
        if self.secret_key:
            return self.secret_key
        path = STATE_DIR / "secret"
        if path.exists():
            return path.read_text().strip()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        path.write_text(secret)
        path.chmod(0o600)
        return secret


class SettingsError(ValueError):
    """A setting has a bad value; the message names the flag, variable and file key."""


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"backfill.toml: {exc}") from None
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        where = f"--{key.replace('_', '-')}, BACKFILL_{key.upper()} or {key} in backfill.toml"
        raise SettingsError(f"setting {key} ({where}): {first['msg']}, got {first.get('input')!r}") from None
