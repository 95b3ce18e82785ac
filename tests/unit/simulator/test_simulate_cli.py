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
