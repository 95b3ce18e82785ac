"""Token issue and authenticated request throughput, against a bare FastAPI endpoint.

Both servers run as subprocesses with the same uvicorn settings (one worker, no access
log); the load generator runs here with the same concurrency against each.
"""

from __future__ import annotations

import tempfile
from urllib.parse import urlencode

import httpx

from bench.common import (
    LoadResult,
    free_port,
    http_request,
    python,
    run_load,
    server_process,
)

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server


def _line(name: str, result: LoadResult, baseline: LoadResult) -> str:
    return (
        f"  {name:38} {result.per_second:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  ratio {result.per_second / baseline.per_second:6.3f}"
        f"{'  ERRORS ' + str(result.errors) if result.errors else ''}"
    )


def run(duration: float = 5.0, concurrency: int = 16) -> dict[str, float]:
    bare_port, our_port = free_port(), free_port()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        server_process(
            [python(), "-m", "bench.bare_app", str(bare_port)],
            env={},
            ready_url=f"http://127.0.0.1:{bare_port}/bare",
        ),
        server_process(
            [python(), "-m", "meadowlark.cli.main", "serve"],
            env={
                "MEADOWLARK_HTTP": f"127.0.0.1:{our_port}",
                "MEADOWLARK_COAP": f"127.0.0.1:{free_port()}",
                "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
                "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
                "MEADOWLARK_COAP_TLS": "off",
                "MEADOWLARK_BOOTSTRAP": "off",
                "MEADOWLARK_BOOTSTRAP_DTLS": "off",
                "MEADOWLARK_DATA_DIR": data_dir,
                "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "MEADOWLARK_RATE_LIMITS__LOGIN_FAILURES_PER_IP": "1000000",
                "MEADOWLARK_LOG_LEVEL": "warning",
            },
            ready_url=f"http://127.0.0.1:{our_port}/ready",
        ),
    ):
        form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
        token = httpx.post(
            f"http://127.0.0.1:{our_port}/api/auth/oauth_password", data=form
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        form_post = {"Content-Type": "application/x-www-form-urlencoded"}
        body = urlencode(form).encode()

        def load(request: bytes, port: int) -> LoadResult:
            return run_load(request, port=port, duration=duration, concurrency=concurrency)

        bare_get = load(http_request("GET", "/bare"), bare_port)
        authed = load(http_request("GET", "/api/auth/me", headers=bearer), our_port)
        scoped = load(http_request("GET", "/api/coiotedm/v3/users/admin", headers=bearer), our_port)
        bare_post = load(http_request("POST", "/bare", headers=form_post, body=body), bare_port)
        issue = load(
            http_request("POST", "/api/auth/oauth_password", headers=form_post, body=body), our_port
        )

    print(f"auth: {concurrency} concurrent clients, {duration:.0f} s per measurement")
    print(_line("bare FastAPI GET (baseline)", bare_get, bare_get))
    print(_line("authenticated GET /api/auth/me", authed, bare_get))
    print(_line("authenticated GET users/{login}", scoped, bare_get))
    print(_line("bare FastAPI POST form (baseline)", bare_post, bare_post))
    print(_line("token issue (password grant, Argon2)", issue, bare_post))
    return {
        "authenticated_request_ratio": authed.per_second / bare_get.per_second,
        "users_get_ratio": scoped.per_second / bare_get.per_second,
        "token_issue_ratio": issue.per_second / bare_post.per_second,
    }
