"""mkfs --data / --s3-endpoint / --s3-credentials, status, and the mount's check of the data tier, through
the real command against a real SeaweedFS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


class Run:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env["XDG_DATA_HOME"] = str(home / "xdg")
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.store = f"sqlite://{home}/meta.db"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fusefs", *args],
            cwd=self.home,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusefs: error: "), result.stderr
    return lines[0].removeprefix("fusefs: error: ")


@pytest.fixture
def run(tmp_path: Path) -> Run:
    (tmp_path / "blocks").mkdir()
    return Run(tmp_path)


def mkfs(run: Run, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("mkfs", "--store", run.store, "--blocks", str(run.home / "blocks"), *args, "fs", env=env)


def secret_of(credentials_file: str) -> str:
    for line in Path(credentials_file).read_text().splitlines():
        if line.startswith("aws_secret_access_key"):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no secret")


def test_mkfs_with_data_tier_and_status(run: Run, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    made = mkfs(
        run,
        "--data",
        f"s3://{bucket}/fs",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--s3-credentials",
        seaweedfs.credentials_file,
    )
    assert made.returncode == 0, made.stderr
    assert f"data s3://{bucket}/fs at {seaweedfs.endpoint}" in made.stdout
    status = run("status", "--store", run.store)
    assert status.returncode == 0, status.stderr
    assert f"  fs: data s3://{bucket}/fs at {seaweedfs.endpoint};" in status.stdout, status.stdout
    secret = secret_of(seaweedfs.credentials_file)
    assert secret not in made.stdout + made.stderr + status.stdout
    for path in run.home.glob("meta.db*"):  # never stored
        assert secret.encode() not in path.read_bytes()


def test_mkfs_credentials_from_environment(run: Run, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    env = {"AWS_SHARED_CREDENTIALS_FILE": seaweedfs.credentials_file}
    made = mkfs(run, "--data", f"s3://{bucket}", "--s3-endpoint", seaweedfs.endpoint, env=env)
    assert made.returncode == 0, made.stderr
    from blocks.objects import load_credentials

    creds = load_credentials(seaweedfs.credentials_file)
    env = {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key}
    made = run(
        "mkfs",
        "--store",
        run.store,
        "--data",
        f"s3://{bucket}/two",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--blocks",
        str(run.home),
        "two",
        env=env,
    )
    assert made.returncode == 0, made.stderr


def test_mkfs_missing_bucket_creates_nothing(run: Run, seaweedfs) -> None:  # type: ignore[no-untyped-def]
    made = mkfs(
        run,
        "--data",
        "s3://no-such-bucket/fs",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--s3-credentials",
        seaweedfs.credentials_file,
    )
    assert made.returncode == 1
    assert one_line_error(made) == f"bucket 'no-such-bucket' does not exist at {seaweedfs.endpoint}"
    assert list((run.home / "blocks").iterdir()) == []  # no claim left behind
    assert "0 filesystem(s)" in run("status", "--store", run.store).stdout


def test_mkfs_bad_credentials(run: Run, seaweedfs, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wrong = tmp_path / "wrong"
    key = Path(seaweedfs.credentials_file).read_text().splitlines()[1]
    wrong.write_text(f"[default]\n{key}\naws_secret_access_key = wrong-secret-5678\n")
    made = mkfs(
        run,
        "--data",
        f"s3://{bucket}/fs",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--s3-credentials",
        str(wrong),
    )
    assert made.returncode == 1
    message = one_line_error(made)
    assert "refused the credentials" in message and "wrong-secret-5678" not in message
    no_creds = mkfs(run, "--data", f"s3://{bucket}/fs", "--s3-endpoint", seaweedfs.endpoint)
    assert no_creds.returncode == 1
    assert one_line_error(no_creds).startswith("no S3 credentials: set AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize(
    "args, message",
    [
        (("--data", "s3://bucket/p"), "--data needs --s3-endpoint URL"),
        (("--s3-endpoint", "http://127.0.0.1:1"), "--s3-endpoint and --s3-credentials go with --data"),
        (("--data", "s3://bucket/p", "--s3-endpoint", "127.0.0.1:1"), "--s3-endpoint must look like"),
        (("--data", "bucket/p", "--s3-endpoint", "http://127.0.0.1:1"), "--data: data URL must look like"),
    ],
)
def test_mkfs_usage_errors(run: Run, args: tuple[str, ...], message: str) -> None:
    made = mkfs(run, *args)
    assert made.returncode == 2
    assert one_line_error(made).startswith(message)


def test_mount_checks_the_data_tier(run: Run, seaweedfs, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: FUSE is unavailable on this machine")
    made = mkfs(
        run,
        "--data",
        f"s3://{bucket}/fs",
        "--s3-endpoint",
        seaweedfs.endpoint,
        "--s3-credentials",
        seaweedfs.credentials_file,
    )
    assert made.returncode == 0, made.stderr
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    refused = run("mount", "--store", run.store, "--name", "fs", str(mnt))
    assert refused.returncode == 1
    assert one_line_error(refused).startswith("no S3 credentials")
    env = {"AWS_SHARED_CREDENTIALS_FILE": seaweedfs.credentials_file}
    mounted = run("mount", "--store", run.store, "--name", "fs", str(mnt), env=env)
    assert mounted.returncode == 0, mounted.stderr
    try:
        (mnt / "f").write_bytes(b"y" * 300_000)
        assert (mnt / "f").read_bytes() == b"y" * 300_000
    finally:
        assert run("umount", str(mnt)).returncode == 0


@pytest.mark.parametrize(
    "option, message",
    [
        ("cache_size=lots", "mount option 'cache_size=': "),
        ("staging_size=1T", "mount option 'staging_size=': invalid size '1T'"),
        ("cache_dir=", "mount option 'cache_dir=': use 'cache_dir=VALUE'"),
    ],
)
def test_mount_option_usage_errors(run: Run, tmp_path: Path, option: str, message: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    refused = run("mount", "--store", run.store, "--name", "fs", "-o", option, str(mnt))
    assert refused.returncode == 2
    assert one_line_error(refused).startswith(message)


def test_cache_dir_needs_a_data_tier(run: Run, tmp_path: Path) -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: FUSE is unavailable on this machine")
    assert mkfs(run).returncode == 0
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    cache.mkdir()
    refused = run("mount", "--store", run.store, "--name", "fs", "-o", f"cache_dir={cache}", str(mnt))
    assert refused.returncode == 1
    assert one_line_error(refused) == (
        "-o cache_dir needs a filesystem with a data tier (mkfs --data); 'fs' has none"
    )
    assert os.listdir(cache) == []
