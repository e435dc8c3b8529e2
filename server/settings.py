"""One validated ``Settings`` for every process, read from ``SOMO_*`` environment variables.

Nested sections use ``__`` (``SOMO_DATABASE__URL``). Validation happens at start-up so a
typo fails the deploy, not the first payment at 2 a.m.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lms_domain.changefeed import NodeRole
from lms_domain.db import SUPPORTED_DRIVERS

PLACEHOLDER_PREFIX = "dev-"  # every development default secret starts with this
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///var/somo.db"
# The central server's node id in HLC versions; fixed so restarts keep one identity.
CENTRAL_NODE_ID = uuid.UUID("00000000-0000-7000-8000-00000000c0de")


class DatabaseSettings(BaseModel):
    url: str = DEFAULT_SQLITE_URL
    echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parsed = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        except ValueError:
            raise ValueError("the port must be a number, e.g. postgresql+asyncpg://user@host:5432/somo") from None
        if parsed.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"driver {parsed.drivername!r} is not supported; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        if parsed.get_backend_name() == "sqlite" and not parsed.database:
            raise ValueError("an SQLite URL needs a file path, e.g. sqlite+aiosqlite:///var/somo.db")
        if parsed.get_backend_name() == "postgresql" and (not parsed.host or not parsed.database):
            raise ValueError("a Postgres URL needs a host and a database, e.g. postgresql+asyncpg://user@host/somo")
        return value

    @property
    def backend(self) -> str:
        return make_url(self.url).get_backend_name()

    def ensure_sqlite_dir(self) -> None:
        """Create the folder of an SQLite file so a fresh clone can start."""
        parsed = make_url(self.url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


class RedisSettings(BaseModel):
    url: str | None = None  # unset or empty: an in-process store serves the embedded default

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if isinstance(value, str) and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8080"  # used in callbacks and verification links
    behind_https: bool = False


class RateLimitSettings(BaseModel):
    enabled: bool = True
    per_client_rps: float = Field(default=50.0, gt=0)
    per_client_burst: int = Field(default=200, ge=1)
    per_token_rps: float = Field(default=10.0, gt=0)
    per_token_burst: int = Field(default=60, ge=1)


class SecuritySettings(BaseModel):
    secret_key: SecretStr = SecretStr("dev-insecure-secret-key-change-me")
    access_token_ttl_s: int = Field(default=900, ge=60)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)


class ProviderCredentials(BaseModel):
    """One institution's own provider credentials; empty fields fall back to the defaults."""

    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    passkey: SecretStr | None = None
    initiator: str | None = None
    security_credential: SecretStr | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None


class PaymentsSettings(BaseModel):
    simulator_url: str = "http://127.0.0.1:8090"
    mpesa_consumer_key: SecretStr = SecretStr("dev-mpesa-consumer-key")
    mpesa_consumer_secret: SecretStr = SecretStr("dev-mpesa-consumer-secret")
    mpesa_passkey: SecretStr = SecretStr("dev-mpesa-passkey")
    # Used when an institution has no active stk_push ProviderAccount (174379 is the sandbox's).
    mpesa_shortcode: str = Field(default="174379", pattern=r"^\d{5,7}$")
    # The unguessable path segment of every provider callback URL (/callbacks/mpesa/<secret>/...).
    callback_secret: SecretStr = SecretStr("dev-callback-secret")
    # API operator for Transaction Status and Reversal; the credential is the initiator password
    # already RSA-encrypted with Safaricom's certificate (the simulator accepts any value).
    mpesa_initiator: str = "somo-api"
    mpesa_security_credential: SecretStr = SecretStr("dev-mpesa-security-credential")
    airtel_client_id: SecretStr = SecretStr("dev-airtel-client-id")
    airtel_client_secret: SecretStr = SecretStr("dev-airtel-client-secret")
    # The secret behind Airtel's callback ``hash``; log_only records a mismatch, enforce ignores it.
    airtel_callback_hash_secret: SecretStr = SecretStr("dev-airtel-callback-hash-secret")
    airtel_hash_mode: Literal["log_only", "enforce"] = "log_only"
    # Empty means the simulator: an institution's ProviderAccount.base_url wins when it is set.
    mpesa_base_url: str = ""
    airtel_base_url: str = ""
    # Source addresses allowed to call /callbacks (CIDRs, e.g. Safaricom's 196.201.212.0/22).
    callback_allowlist: list[str] = Field(default_factory=list)
    callback_allowlist_mode: Literal["off", "log_only", "enforce"] = "off"
    # Intents with no answer after this long are asked about (STK Query, Airtel enquiry).
    poll_after_s: float = Field(default=60.0, ge=1)
    poll_interval_s: float = Field(default=30.0, ge=0)  # the payments-poll job; 0 switches it off
    # Stored callbacks are settled by this many workers, up to settle_batch per transaction;
    # the rest of the database pool stays free for acknowledging the next callbacks.
    settle_workers: int = Field(default=2, ge=1, le=32)
    settle_batch: int = Field(default=32, ge=1, le=500)
    # Per-institution credentials, named by ProviderAccount.credentials_ref:
    # SOMO_PAYMENTS__CREDENTIALS__<REF>__CONSUMER_KEY=... (missing fields fall back to the above).
    credentials: dict[str, ProviderCredentials] = Field(default_factory=dict)

    @field_validator("callback_allowlist")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or CIDR network") from None
        return value


class UssdSettings(BaseModel):
    service_code: str = "*384*123#"
    session_ttl_s: int = Field(default=180, ge=30)
    resume_ttl_s: int = Field(default=600, ge=60)
    # AT waits 15 s for a reply; past this the hop answers a polite END instead.
    deadline_s: float = Field(default=4.0, gt=0, le=12)
    quiz_cache_ttl_s: float = Field(default=60.0, ge=0)


class SyncSettings(BaseModel):
    node_id: uuid.UUID = CENTRAL_NODE_ID
    role: NodeRole = NodeRole.CENTRAL
    # Rows and uncompressed bytes per pull answer (gzip makes the bytes about a tenth).
    batch_rows: int = Field(default=2000, ge=1, le=10_000)
    batch_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Where lesson files live (assets' file_path is relative to it); edges fetch them by checksum.
    asset_dir: Path = Path("var/assets")


class EdgeSettings(BaseModel):
    """``somo edge ...``: a school's node. Its identity and cursor live in its own database."""

    data_dir: Path = Path("var/edge")
    host: str = "0.0.0.0"  # noqa: S104 - the school LAN is the point
    port: int = Field(default=8081, ge=1, le=65535)
    # Background sync: every interval, and at once when the link returns; failures back off
    # exponentially up to the ceiling.
    sync_interval_s: float = Field(default=60.0, ge=0)
    backoff_max_s: float = Field(default=900.0, ge=1)
    request_timeout_s: float = Field(default=60.0, gt=0)


class NotificationsSettings(BaseModel):
    at_username: str = "sandbox"
    at_api_key: SecretStr = SecretStr("dev-africastalking-api-key")
    # Empty means the simulator at SOMO_PAYMENTS__SIMULATOR_URL (one loopback process serves every
    # provider); a real deployment sets https://api.africastalking.com.
    at_base_url: str = ""
    # The alphanumeric sender id AT registered for us; None sends from AT's shared default.
    sms_sender_id: str | None = None
    # The number learners text: a shortcode, or a long number in E.164.
    sms_shortcode: str = Field(default="20880", pattern=r"^\+?\d{3,15}$")
    # How often the "notifications" job sends what is due; 0 switches it off (tests send by hand).
    send_interval_s: float = Field(default=10.0, ge=0)
    # Which SMS provider sends notifications: Africa's Talking, or Azure Communication Services.
    # USSD and SMS commands always use Africa's Talking (they arrive through it).
    sms_provider: Literal["africastalking", "acs"] = "africastalking"
    # Azure Communication Services (SMS and email), as the Azure portal shows it:
    # "endpoint=https://<resource>.communication.azure.com/;accesskey=<base64>". A dev- value
    # means the simulator at SOMO_PAYMENTS__SIMULATOR_URL.
    acs_connection_string: SecretStr = SecretStr("dev-acs-connection-string")
    acs_sms_from: str = Field(default="+18005550100", pattern=r"^\+\d{8,15}$")
    sender_email: str = "DoNotReply@somo.example"

    @field_validator("at_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty (the simulator) or start with http:// or https://")
        return value.rstrip("/")


class SchedulerSettings(BaseModel):
    # Run the scheduled jobs in the server process. With several server replicas, set it false
    # and run one `somo worker` (the jobs' locks keep even several workers safe).
    enabled: bool = True
    # Learners are invited to renew this many days before their subscription is due.
    renewal_notice_days: int = Field(default=3, ge=0, le=30)
    # Rows per transaction in the batch jobs.
    batch: int = Field(default=1000, ge=10, le=10_000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SOMO_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Literal["development", "staging", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    security: SecuritySettings = SecuritySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    payments: PaymentsSettings = PaymentsSettings()
    ussd: UssdSettings = UssdSettings()
    sync: SyncSettings = SyncSettings()
    edge: EdgeSettings = EdgeSettings()
    notifications: NotificationsSettings = NotificationsSettings()
    scheduler: SchedulerSettings = SchedulerSettings()

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        # An edge node holds no provider secrets at all, and signs its logins with the secret
        # in its own data directory (written by `somo edge init`), never one from the environment.
        if self.environment == "development" or self.sync.role is NodeRole.EDGE:
            return self
        offenders = [
            name for name, secret in self.secrets() if not secret.strip() or secret.startswith(PLACEHOLDER_PREFIX)
        ]
        if offenders:
            raise ValueError(
                f"placeholder or empty secrets are not allowed in {self.environment}: set " + ", ".join(offenders)
            )
        if len(self.security.secret_key.get_secret_value()) < 32:
            raise ValueError("SOMO_SECURITY__SECRET_KEY must be at least 32 characters outside development")
        return self

    def secrets(self) -> list[tuple[str, str]]:
        """Every secret as (environment variable name, value)."""
        found: list[tuple[str, str]] = []
        for section_name in type(self).model_fields:
            section = getattr(self, section_name)
            if not isinstance(section, BaseModel):
                continue
            for field_name in type(section).model_fields:
                value = getattr(section, field_name)
                if isinstance(value, SecretStr):
                    env = f"SOMO_{section_name}__{field_name}".upper()
                    found.append((env, value.get_secret_value()))
        return found


def describe_validation_error(exc: Exception) -> str:
    """One line per bad setting, naming the environment variable a person must fix."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        env = "SOMO_" + "__".join(loc).upper() if loc else "settings"
        lines.append(f"{env}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)
