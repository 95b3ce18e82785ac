"""What the console's browser tests share: the skip check for node, chromium and
playwright-core, a ``meadowlark serve`` process, and the environment of the browser scripts
in tests/e2e/console/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from node_processes import ADMIN_PASSWORD, Node, start_node

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "console"
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = Path(os.environ.get("MEADOWLARK_TEST_CHROMIUM", "/usr/bin/chromium"))


def _missing_tool() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not CHROMIUM.exists():
        return f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if not (HARNESS / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed (cd {HARNESS.relative_to(ROOT)} && npm ci)"
    return None


needs_browser = pytest.mark.skipif(_missing_tool() is not None, reason=str(_missing_tool()))


@contextmanager
def serving_node(
    name: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Node]:
    """``meadowlark serve`` as a process, ready; stopped on leaving."""
    node = start_node(name, data_dir, extra_env=extra_env)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def script_env(node: Node, **variables: str) -> dict[str, str]:
    """The environment of a browser script: the server, its admin, where screenshots go and
    which chromium to run, plus the script's own ``variables``."""
    return {
        **os.environ,
        "CONSOLE_URL": node.url,
        "ADMIN_LOGIN": "admin",
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ARTIFACTS": str(ARTIFACTS),
        "CHROMIUM": str(CHROMIUM),
        **variables,
    }
