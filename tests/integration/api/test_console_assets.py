"""The web console's built files at /console: served with the right content types and cache
headers, unknown page paths fall back to index.html (the app routes them), and no path
reaches a file outside the console's directory."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path, PurePosixPath

import httpx
import pytest

from meadowlark.api.app import create_app
from meadowlark.api.routers import console_ui
from meadowlark.runtime import Runtime


class AppClient:
    """Requests straight to the ASGI app (no lifespan: the static routes need no store)."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path)

        return asyncio.run(send())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def head(self, path: str) -> httpx.Response:
        return self.request("HEAD", path)


@pytest.fixture(scope="module")
def http(tmp_path_factory, settings_for) -> AppClient:
    runtime = Runtime.from_settings(settings_for(tmp_path_factory.mktemp("console")))
    return AppClient(create_app(runtime, manage_runtime=False))


@pytest.fixture(scope="module")
def index_html() -> str:
    return (console_ui.CONSOLE_DIR / "index.html").read_text()


def _asset_paths(index_html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', index_html)


def test_the_built_console_is_in_the_package(index_html):
    assets = _asset_paths(index_html)
    assert any(path.endswith(".js") for path in assets)
    assert any(path.endswith(".css") for path in assets)
    for path in assets:
        assert (console_ui.CONSOLE_DIR / path.removeprefix("/console/")).is_file(), path


@pytest.mark.parametrize("path", ["/console", "/console/"])
def test_index_is_html_revalidated_with_a_strict_policy(http, path, index_html):
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.text == index_html


def test_hashed_assets_have_their_type_and_are_cached_for_good(http, index_html):
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for path in _asset_paths(index_html):
        response = http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == types[Path(path).suffix]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.content == (console_ui.CONSOLE_DIR / path[len("/console/") :]).read_bytes()


def test_head_answers_like_get(http):
    response = http.head("/console/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/console/devices",
        "/console/devices/urn:imei:1234.5",
        "/console/devices/a%2Fb",
        "/console/x/y/z",
    ],
)
def test_page_paths_fall_back_to_index(http, path, index_html):
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.text == index_html


def test_a_missing_hashed_asset_is_404_not_the_page(http):
    response = http.get("/console/assets/index-missing.js")
    assert response.status_code == 404
    assert response.json()["code"] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/console/..%2fpyproject.toml",
        "/console/..%2f..%2f..%2fpyproject.toml",
        "/console/assets/..%2f..%2f..%2frouters%2fconsole_ui.py",
        "/console/%2e%2e/%2e%2e/app.py",
        "/console/assets/%2e%2e%2f%2e%2e%2fsignup.html",
        "/console/..%5c..%5capp.py",
        "/console/%2fetc%2fpasswd",
        "/console/%2e/index.html",
        "/console/index.html%00.js",
        "/console/assets/%ff%fe",
    ],
)
def test_hostile_paths_get_an_error_never_a_file(http, path):
    """404, or 400 where the input guard refuses the text first (NUL)."""
    response = http.get(path)
    assert response.status_code in (400, 404), (path, response.text[:200])
    assert response.headers["content-type"] == "application/json"
    assert "root" not in response.text and "import" not in response.text


def test_a_symlink_out_of_the_directory_is_not_followed(http, tmp_path, monkeypatch):
    console = tmp_path / "console"
    console.mkdir()
    (console / "index.html").write_text("<!doctype html>")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (console / "leak.txt").symlink_to(secret)
    monkeypatch.setattr(console_ui, "CONSOLE_DIR", console)
    assert http.get("/console/leak.txt").text == "<!doctype html>"  # not a file: the app page


def test_no_built_console_is_a_clear_404(http, tmp_path, monkeypatch):
    monkeypatch.setattr(console_ui, "CONSOLE_DIR", tmp_path / "absent")
    response = http.get("/console/")
    assert response.status_code == 404
    assert "make console" in response.json()["message"]


def test_the_console_is_not_in_the_api_document(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


def test_every_built_file_ships_in_the_wheel():
    """pyproject's package-data globs cover every file of the built console."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["meadowlark"]
    package = console_ui.CONSOLE_DIR.parents[2]  # src/meadowlark
    for file in console_ui.CONSOLE_DIR.rglob("*"):
        if file.is_file():
            relative = file.relative_to(package).as_posix()
            assert any(PurePosixPath(relative).match(glob) for glob in globs), relative
