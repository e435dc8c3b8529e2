"""Settings come from ``SOMO_*`` variables, are validated up front and name what to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import DEFAULT_SQLITE_URL, PLACEHOLDER_PREFIX, Settings, describe_validation_error

# Every secret the settings carry, by environment variable. Kept explicit (not derived
# from ``Settings.secrets()``) so a renamed variable fails here instead of passing silently.
SECRET_ENV_VARS = (
    "SOMO_SECURITY__SECRET_KEY",
    "SOMO_PAYMENTS__MPESA_CONSUMER_KEY",
    "SOMO_PAYMENTS__MPESA_CONSUMER_SECRET",
    "SOMO_PAYMENTS__MPESA_PASSKEY",
    "SOMO_PAYMENTS__AIRTEL_CLIENT_ID",
    "SOMO_PAYMENTS__AIRTEL_CLIENT_SECRET",
    "SOMO_PAYMENTS__CALLBACK_SECRET",
    "SOMO_PAYMENTS__MPESA_SECURITY_CREDENTIAL",
    "SOMO_PAYMENTS__AIRTEL_CALLBACK_HASH_SECRET",
    "SOMO_NOTIFICATIONS__AT_API_KEY",
    "SOMO_NOTIFICATIONS__ACS_CONNECTION_STRING",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited SOMO_* variable and no stray .env file may leak into a test."""
    for name in list(os.environ):
        if name.upper().startswith("SOMO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _set_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV_VARS:
        monkeypatch.setenv(name, f"real-{name.lower()}-0123456789abcdefghijklmnop")


def test_defaults_are_the_embedded_development_setup() -> None:
    settings = Settings()

    assert settings.database.url == DEFAULT_SQLITE_URL == "sqlite+aiosqlite:///var/somo.db"
    assert settings.database.backend == "sqlite"
    assert settings.redis.url is None
    assert settings.environment == "development"


def test_a_postgres_url_switches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_DATABASE__URL", "postgresql+asyncpg://somo:pw@db.internal:5432/somo")

    settings = Settings()

    assert settings.database.url == "postgresql+asyncpg://somo:pw@db.internal:5432/somo"
    assert settings.database.backend == "postgresql"


def test_nested_delimiter_reaches_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_HTTP__PORT", "9123")
    monkeypatch.setenv("SOMO_USSD__SESSION_TTL_S", "240")

    settings = Settings()

    assert settings.http.port == 9123
    assert settings.ussd.session_ttl_s == 240
    assert settings.http.host == "127.0.0.1"  # the rest of the section keeps its defaults


def test_a_dotenv_file_in_the_working_directory_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOMO_HTTP__PORT=9345\n", encoding="utf-8")

    assert Settings().http.port == 9345
    monkeypatch.setenv("SOMO_HTTP__PORT", "9346")
    assert Settings().http.port == 9346  # the environment wins over the file


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "mysql://x/y",
        "postgresql+asyncpg://u@h:notaport/db",
        "postgresql+asyncpg:///nodb",
        "postgresql+asyncpg://u@h",
        "sqlite+aiosqlite://",
        "postgresql://u@h/db",  # the sync driver would block the event loop
    ],
)
def test_malformed_database_urls_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("SOMO_DATABASE__URL", url)

    with pytest.raises(ValidationError) as caught:
        Settings()

    message = describe_validation_error(caught.value)
    assert message.startswith("SOMO_DATABASE__URL: ")
    assert "\n" not in message


def test_an_out_of_range_port_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_HTTP__PORT", "70000")

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_validation_error(caught.value).startswith("SOMO_HTTP__PORT: ")


def test_describe_validation_error_passes_other_errors_through() -> None:
    assert describe_validation_error(RuntimeError("plain")) == "plain"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOMO_REDIS__URL", value)

    assert Settings().redis.url is None


@pytest.mark.parametrize("value", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "unix:///run/r.sock"])
def test_redis_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOMO_REDIS__URL", value)

    assert Settings().redis.url == value


def test_a_non_redis_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_REDIS__URL", "http://x")

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_validation_error(caught.value).startswith("SOMO_REDIS__URL: ")


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_placeholder_secrets_are_refused_outside_development(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.setenv("SOMO_ENVIRONMENT", environment)

    with pytest.raises(ValidationError) as caught:
        Settings()

    message = describe_validation_error(caught.value)
    assert environment in message
    for name in SECRET_ENV_VARS:
        assert name in message


def test_one_remaining_placeholder_is_named_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_ENVIRONMENT", "production")
    _set_real_secrets(monkeypatch)
    monkeypatch.setenv("SOMO_PAYMENTS__MPESA_PASSKEY", f"{PLACEHOLDER_PREFIX}still-the-sandbox-one")

    with pytest.raises(ValidationError) as caught:
        Settings()

    message = describe_validation_error(caught.value)
    assert "SOMO_PAYMENTS__MPESA_PASSKEY" in message
    assert not [name for name in SECRET_ENV_VARS if name != "SOMO_PAYMENTS__MPESA_PASSKEY" and name in message]


def test_production_with_real_secrets_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_ENVIRONMENT", "production")
    _set_real_secrets(monkeypatch)

    settings = Settings()

    assert settings.environment == "production"
    assert not [name for name, value in settings.secrets() if value.startswith(PLACEHOLDER_PREFIX)]


def test_a_short_secret_key_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_ENVIRONMENT", "production")
    _set_real_secrets(monkeypatch)
    monkeypatch.setenv("SOMO_SECURITY__SECRET_KEY", "x" * 31)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert "SOMO_SECURITY__SECRET_KEY" in describe_validation_error(caught.value)


def test_a_secret_key_of_exactly_32_characters_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_ENVIRONMENT", "production")
    _set_real_secrets(monkeypatch)
    monkeypatch.setenv("SOMO_SECURITY__SECRET_KEY", "x" * 32)

    assert Settings().security.secret_key.get_secret_value() == "x" * 32


def test_development_defaults_are_all_placeholders() -> None:
    """The refusal relies on every development secret starting with the placeholder prefix."""
    secrets = Settings().secrets()

    assert sorted(name for name, _ in secrets) == sorted(SECRET_ENV_VARS)
    assert all(value.startswith(PLACEHOLDER_PREFIX) for _, value in secrets)


@pytest.mark.parametrize("name", SECRET_ENV_VARS)
def test_secret_names_are_the_real_environment_variables(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    value = f"from-the-environment-{name.lower()}"
    monkeypatch.setenv(name, value)

    secrets = dict(Settings().secrets())

    assert secrets[name] == value


def test_secrets_are_not_shown_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMO_SECURITY__SECRET_KEY", "do-not-print-me-0123456789abcdefgh")

    settings = Settings()

    assert "do-not-print-me" not in repr(settings)
    assert "do-not-print-me" not in str(settings.model_dump())
