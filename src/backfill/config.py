"""Settings from flags, the environment (``BACKFILL_*``) or ``backfill.toml``."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from limits import parse as parse_limit
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

STATE_DIR = Path(".backfill")
# Schemes of a Redis rate_limit_storage (memory:// is the other choice).
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKFILL_", toml_file="backfill.toml", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{STATE_DIR / 'backfill.db'}")
    project_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 6789
    # The address people open the web page at (links in notifications); default http://host:port.
    public_url: str | None = None
    workers: NonNegativeInt = 4  # 0: API and scheduler only
    lease_seconds: float = 30.0
    scheduler_interval_seconds: float = 1.0
    secret_key: str | None = None
    rate_limit: str = "1200/minute"
    # Failed sign-ins allowed per client address and per e-mail.
    sign_in_rate_limit: str = "10/minute"
    # memory:// (one process) or redis://host:port/db (shared by every API process).
    rate_limit_storage: str = "memory://"
    rate_limit_key_prefix: str = "backfill"
    # Request bodies larger than this are refused with 413 while they stream in.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_log_bytes: int = 1_000_000
    log_level: str = "INFO"
    log_format: Literal["auto", "text", "json"] = "auto"
    """auto: human-readable lines on a terminal, JSON lines otherwise."""
    # Bounds of every wait on the database (store.db.DatabaseTimeouts, cli.common.timeouts_of), in seconds.
    db_busy_timeout_seconds: PositiveFloat = 30.0
    db_connect_timeout_seconds: PositiveFloat = 2.0
    db_statement_timeout_seconds: PositiveFloat = 30.0
    db_lock_timeout_seconds: PositiveFloat = 10.0
    db_tcp_user_timeout_seconds: PositiveFloat = 2.5
    db_pool_timeout_seconds: PositiveFloat = 4.0
    # `backfill worker`: how long to wait at start for a database that is unreachable
    # (starting, or in an outage) before giving up; 0: fail at once.
    db_startup_wait_seconds: NonNegativeFloat = 0.0
    # HTTP server: idle keep-alive connections are closed after this; on shutdown,
    # requests in flight get this long.
    http_keep_alive_seconds: PositiveInt = 5
    http_graceful_shutdown_seconds: PositiveInt = 10
    # a client must send its whole request head (line and headers) within this
    http_request_head_seconds: PositiveInt = 10

    @field_validator("rate_limit", "sign_in_rate_limit")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError("must look like 1200/minute or 10/second") from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _a_storage(cls, value: str) -> str:
        if value != "memory://" and not value.startswith(REDIS_SCHEMES):
            raise ValueError("must be memory:// or redis://host:port/db")
        return value

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
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
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
