"""Settings: the ``MEADOWLARK_*`` env var contract, TOML files, placeholder secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from meadowlark.config import HostPort, Settings


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch):
    monkeypatch.delenv("MEADOWLARK_CONFIG", raising=False)


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert str(settings.http) == "127.0.0.1:8087"
    assert (settings.coap.host, settings.coap.port) == ("0.0.0.0", 5683)
    assert settings.token_lifetime == 300
    assert settings.signup is True and settings.dev is False
    assert settings.max_body_bytes == 1_048_576
    assert settings.resolved_database_url == (
        f"sqlite+aiosqlite:///{(tmp_path / 'meadowlark-data' / 'meadowlark.db').resolve()}"
    )


@pytest.mark.parametrize(
    ("env", "value", "check"),
    [
        (
            "MEADOWLARK_HTTP",
            "0.0.0.0:9000",
            lambda s: (s.http.host, s.http.port) == ("0.0.0.0", 9000),
        ),
        ("MEADOWLARK_COAP", "[::1]:5684", lambda s: (s.coap.host, s.coap.port) == ("::1", 5684)),
        ("MEADOWLARK_DATA_DIR", "/srv/ml", lambda s: s.data_dir == Path("/srv/ml")),
        (
            "MEADOWLARK_DATABASE_URL",
            "postgresql+psycopg://u:p@h/db",
            lambda s: s.resolved_database_url == "postgresql+psycopg://u:p@h/db",
        ),
        ("MEADOWLARK_TOKEN_LIFETIME", "60", lambda s: s.token_lifetime == 60),
        (
            "MEADOWLARK_ADMIN_PASSWORD",
            "a-real-Passw0rd",
            lambda s: s.admin_password.get_secret_value() == "a-real-Passw0rd",
        ),
        ("MEADOWLARK_SIGNUP", "false", lambda s: s.signup is False),
        ("MEADOWLARK_SIGNUP", "0", lambda s: s.signup is False),
        ("MEADOWLARK_DEV", "true", lambda s: s.dev is True),
        ("MEADOWLARK_SECRET_KEY", "k" * 40, lambda s: s.signing_key == "k" * 40),
        ("MEADOWLARK_MAX_BODY_BYTES", "2048", lambda s: s.max_body_bytes == 2048),
        ("MEADOWLARK_LOG_LEVEL", "DEBUG", lambda s: s.log_level == "debug"),
        ("MEADOWLARK_LOG_JSON", "true", lambda s: s.log_json is True),
        ("MEADOWLARK_REFRESH_TOKEN_LIFETIME", "3600", lambda s: s.refresh_token_lifetime == 3600),
        (
            "MEADOWLARK_RATE_LIMITS__LOGIN_FAILURES_PER_IP",
            "20",
            lambda s: s.rate_limits.login_failures_per_ip == 20,
        ),
        (
            "MEADOWLARK_RATE_LIMITS__LOGIN_FAILURES_PER_ACCOUNT",
            "3",
            lambda s: s.rate_limits.login_failures_per_account == 3,
        ),
        (
            "MEADOWLARK_TOKEN_EXCHANGE__ISSUER",
            "https://idp",
            lambda s: s.token_exchange.issuer == "https://idp",
        ),
        (
            "MEADOWLARK_TOKEN_EXCHANGE__SHARED_KEY",
            "x" * 40,
            lambda s: s.token_exchange.shared_key.get_secret_value() == "x" * 40,
        ),
    ],
)
def test_each_env_var_is_parsed(monkeypatch, tmp_path, env, value, check):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env, value)
    assert check(Settings())


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("MEADOWLARK_HTTP", "localhost"),
        ("MEADOWLARK_HTTP", "host:port"),
        ("MEADOWLARK_HTTP", "host:70000"),
        ("MEADOWLARK_HTTP", ":80"),
        ("MEADOWLARK_COAP", ""),
        ("MEADOWLARK_TOKEN_LIFETIME", "0"),
        ("MEADOWLARK_TOKEN_LIFETIME", "soon"),
        ("MEADOWLARK_SIGNUP", "maybe"),
        ("MEADOWLARK_LOG_LEVEL", "loud"),
        ("MEADOWLARK_MAX_BODY_BYTES", "10"),
        ("MEADOWLARK_RATE_LIMITS__LOGIN_FAILURES_PER_IP", "0"),
    ],
)
def test_bad_values_are_refused(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("name", ["MEADOWLARK_ADMIN_PASSWORD", "MEADOWLARK_SECRET_KEY"])
@pytest.mark.parametrize(
    "placeholder", ["changethis", "changeme", "CHANGEME", "secret", "password", "admin", ""]
)
def test_placeholder_secrets_are_refused_outside_dev(monkeypatch, name, placeholder):
    monkeypatch.setenv(name, placeholder)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    monkeypatch.setenv("MEADOWLARK_DEV", "true")
    Settings()  # development mode allows them


def test_toml_file_via_meadowlark_config(monkeypatch, tmp_path):
    config = tmp_path / "meadowlark.toml"
    config.write_text(
        'http = "127.0.0.1:9999"\n'
        "token_lifetime = 42\n"
        "signup = false\n"
        f'data_dir = "{tmp_path / "state"}"\n'
        "[rate_limits]\n"
        "login_failures_per_ip = 7\n"
        "[token_exchange]\n"
        'issuer = "https://idp.example"\n'
    )
    monkeypatch.setenv("MEADOWLARK_CONFIG", str(config))
    settings = Settings()
    assert str(settings.http) == "127.0.0.1:9999"
    assert settings.token_lifetime == 42
    assert settings.signup is False
    assert settings.data_dir == tmp_path / "state"
    assert settings.rate_limits.login_failures_per_ip == 7
    assert settings.rate_limits.login_failures_per_account == 5
    assert settings.token_exchange.issuer == "https://idp.example"
    # Environment variables win over the file, explicit arguments over both.
    monkeypatch.setenv("MEADOWLARK_TOKEN_LIFETIME", "77")
    assert Settings().token_lifetime == 77
    assert Settings(token_lifetime=5).token_lifetime == 5


def test_toml_file_with_placeholder_secret_is_refused(monkeypatch, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('admin_password = "changethis"\n')
    monkeypatch.setenv("MEADOWLARK_CONFIG", str(config))
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()


def test_signing_key_is_generated_once_and_kept_private(tmp_path):
    first = Settings(data_dir=tmp_path / "d").signing_key
    second = Settings(data_dir=tmp_path / "d").signing_key
    assert first == second and len(first) >= 48
    mode = stat.S_IMODE((tmp_path / "d" / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert Settings(data_dir=tmp_path / "other").signing_key != first


def test_secrets_do_not_show_in_repr():
    settings = Settings(admin_password="Very-Secret-Pw1", secret_key="s" * 40)
    assert "Very-Secret-Pw1" not in repr(settings) and "s" * 40 not in repr(settings)


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1:80", "127.0.0.1", 80, "127.0.0.1:80"),
        ("[::]:5683", "::", 5683, "[::]:5683"),
        (" example.org:0 ", "example.org", 0, "example.org:0"),
    ],
)
def test_host_port(text, host, port, shown):
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port, str(parsed)) == (host, port, shown)
