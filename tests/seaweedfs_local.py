"""A throwaway SeaweedFS (scripts/seaweedfs_local.sh) for the tests: started once per test session by the
fixtures that need one (tests/objects/conftest.py, and every mount's data tier with
``FUSEFS_TEST_DATA_TIER=1``: tests/conftest.py), with a fresh bucket per test or filesystem."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "seaweedfs_local.sh"


@dataclass
class SeaweedFS:
    directory: str
    endpoint: str
    credentials_file: str

    def _run(self, action: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SEAWEEDFS_LOCAL_DIR=self.directory)
        # The weed of this interpreter's environment (the venv's bin/) comes first.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return subprocess.run(
            ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        """Start it, or skip the test (with the reason) when ``weed`` is missing."""
        result = self._run("start")
        if result.returncode == 2:
            pytest.skip(f"SeaweedFS not available: {result.stderr.strip()}")
        assert result.returncode == 0, result.stderr
        self.endpoint = result.stdout.strip()

    def stop(self) -> None:
        result = self._run("stop")
        assert result.returncode == 0, result.stderr

    def new_bucket(self) -> str:
        from blocks.objects import DataUrl, ObjectStore, load_credentials

        name = f"fusefs-{uuid.uuid4().hex[:12]}"
        store = ObjectStore(self.endpoint, DataUrl(name, ""), load_credentials(self.credentials_file))
        store._client.create_bucket(Bucket=name)
        return name


@contextmanager
def running_seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS in a temporary directory, stopped and removed at the end."""
    directory = tempfile.mkdtemp(prefix="fusefs-seaweedfs-test.")
    server = SeaweedFS(directory, "", os.path.join(directory, "credentials"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
