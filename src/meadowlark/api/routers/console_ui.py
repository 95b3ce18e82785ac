"""The web console at ``/console``: the built single-page app's static files.

The files are built from ``console/`` in the repository (``make console``) into
``api/static/console/`` and shipped in the wheel. They hold no data: the app signs in and
calls the public REST API like any other client, so these routes are public static
assets, outside the permission catalog (``STATIC_ASSET_ROUTES`` names them for the
route-permission test). A path that is no file is one of the app's own pages
(``/console/devices/x``) and gets ``index.html``, so a reload or a bookmark works.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from meadowlark.core.errors import NotFound

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "static" / "console"
INDEX = "index.html"
HASHED_DIR = "assets"
"""Vite names every file here after a hash of its content: cacheable for good."""

STATIC_ASSET_ROUTES = ("/console", "/console/{path:path}")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def _is_plain(relative: str) -> bool:
    """Only plain segments: no ``..`` or ``.``, no absolute path, backslash or NUL."""
    return not (
        relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("..", ".") for part in relative.split("/"))
    )


def _asset(relative: str) -> Path | None:
    """The file under ``CONSOLE_DIR`` that the plain path ``relative`` names, or None;
    the resolved file must still be inside the directory (no symlink out of it)."""
    if not relative:
        return None
    candidate = CONSOLE_DIR.joinpath(*PurePosixPath(relative).parts).resolve()
    if not candidate.is_relative_to(CONSOLE_DIR.resolve()) or not candidate.is_file():
        return None
    return candidate


def _file_response(file: Path, cache_control: str) -> Response:
    media_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control}
    return FileResponse(file, media_type=media_type, headers=headers)


def _index() -> Response:
    index = CONSOLE_DIR / INDEX
    if not index.is_file():
        raise NotFound("the web console is not built (run `make console`)")
    return _file_response(index, REVALIDATE)


async def console_page(request: Request) -> Response:
    """A built file, or ``index.html`` for the app's own page paths."""
    relative = request.path_params.get("path", "")
    if not _is_plain(relative):
        raise NotFound("no such file")
    file = _asset(relative)
    hashed = relative.startswith(f"{HASHED_DIR}/")
    if file is not None:
        return _file_response(file, IMMUTABLE if hashed else REVALIDATE)
    if hashed:
        raise NotFound("no such file")
    return _index()


def routes() -> list[Route]:
    """The console's routes, appended after the API's (they match no API path)."""
    return [
        Route(path, console_page, methods=["GET"], include_in_schema=False)
        for path in STATIC_ASSET_ROUTES
    ]
