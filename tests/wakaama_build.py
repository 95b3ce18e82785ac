"""Run ``../shared/peers/build-wakaama.sh`` from parallel test workers one at a time.

The script rebuilds into a shared folder (``rm -rf`` then ``cmake``) when no build is
there yet; two pytest-xdist workers running it at once would tear each other's build.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

LOCK_FILE = Path.home() / ".cache" / "lwm2m-peers.lock"


def run_build_script(script: Path) -> subprocess.CompletedProcess[str]:
    """The script's completed run (stdout: the binaries' paths), under an exclusive lock."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run(  # noqa: S603 - our own build script
            ["bash", str(script)],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
