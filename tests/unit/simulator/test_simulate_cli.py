"""Option checking of ``meadowlark simulate`` (no network needed)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from meadowlark.cli.simulate import simulate


def given_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate)
    return app


def test_unknown_format_is_refused() -> None:
    result = CliRunner().invoke(given_app(), ["--format", "xml"])
    assert result.exit_code == 2
    assert "unknown format" in result.output


def test_unknown_lwm2m_version_is_refused() -> None:
    result = CliRunner().invoke(given_app(), ["--lwm2m-version", "2.0"])
    assert result.exit_code == 2


def test_firmware_failure_option_is_checked() -> None:
    for bad in ("download:1", "download:x", "explode"):
        result = CliRunner().invoke(given_app(), ["--firmware-fail", bad])
        assert result.exit_code == 2, bad
        assert "firmware-fail" in result.output


def test_unknown_transport_is_refused() -> None:
    result = CliRunner().invoke(given_app(), ["--transport", "sctp"])
    assert result.exit_code == 2
    assert "transport" in result.output


def test_a_certificate_needs_its_key() -> None:
    result = CliRunner().invoke(
        given_app(), ["--transport", "tls", "--certificate", "device.pem", "--ca", "ca.pem"]
    )
    assert result.exit_code == 2
    assert "--private-key" in result.output


def test_a_coaps_server_needs_credentials() -> None:
    result = CliRunner().invoke(given_app(), ["--server", "coaps://127.0.0.1:5684"])
    assert result.exit_code == 2
    assert "needs --psk-key" in result.output


def test_credentials_need_a_coaps_server() -> None:
    result = CliRunner().invoke(given_app(), ["--psk-key", "00112233"])
    assert result.exit_code == 2
    assert "coaps://" in result.output


def test_psk_options_are_checked() -> None:
    secure = ["--server", "coaps://127.0.0.1:5684"]
    for options, expected in (
        (["--psk-key", "not-hex"], "hexadecimal"),
        (["--psk-key", "0011", "--psk-identity", "{serial}"], "unusable credentials"),
        (["--psk-key", "0011", "--certificate", "c.pem", "--private-key", "k.pem"], "not both"),
    ):
        result = CliRunner().invoke(given_app(), [*secure, *options])
        assert result.exit_code == 2, options
        assert expected in result.output, (options, result.output)


def test_certificate_options_are_checked(tmp_path) -> None:
    secure = ["--server", "coaps://127.0.0.1:5684"]
    result = CliRunner().invoke(given_app(), [*secure, "--certificate", "c.pem"])
    assert result.exit_code == 2
    assert "--private-key" in result.output
    missing = [*secure, "--certificate", str(tmp_path / "{endpoint}.pem"), "--private-key", "k"]
    # wide enough for the whole path on one line (pytest-xdist's tmp_path is longer)
    result = CliRunner().invoke(given_app(), missing, env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "unusable credentials" in result.output
    assert "sim-0000.pem" in result.output
