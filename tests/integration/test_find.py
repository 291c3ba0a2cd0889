"""``fusefs find`` beside a running mount: its answers match GNU find's (names, globs, subtrees) and a walk
of the mount with getxattr (xattr values, JSON fields); concurrent renames, hard links, unlinks and
xattr changes through the kernel (with retry chaos on too) leave indexes that ``index.check`` proves
exact after unmount."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from metadata import index
from metadata.keys import FsKeys
from metadata.urls import open_store

pytestmark = pytest.mark.chaos
REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def fs(mount_fs):
    if mount_fs.target != "fusefs":
        pytest.skip("fusefs find reads fusefs' own store")
    mnt = mount_fs(mkfs=("--search-index",))
    return mnt, mount_fs.mounts[mnt]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "fusefs", *args], env=env, capture_output=True, text=True, timeout=120
    )


def fusefs(mounted, *args: str) -> subprocess.CompletedProcess:
    return cli("find", "--store", mounted.store, "--fs", mounted.name, *args)


def index_command(mounted, what: str) -> subprocess.CompletedProcess:
    return cli("index", what, "--store", mounted.store, "--name", mounted.name)


def found(mounted, *args: str) -> list[str]:
    result = fusefs(mounted, *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return sorted(result.stdout.splitlines())


def gnu_find(mnt: Path, under: str, *predicate: str) -> list[str]:
    start = mnt / under.lstrip("/") if under != "/" else mnt
    out = subprocess.run(
        ["find", str(start), "-mindepth", "0" if under != "/" else "1", *predicate],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted("/" + os.path.relpath(line, mnt) for line in out.splitlines())


def walk(mnt: Path, keep) -> list[str]:
    """Paths below the mount whose xattrs satisfy ``keep(xattrs dict)``: the reference for xattr queries."""
    hits = []
    for directory, dirs, files in os.walk(mnt):
        for name in dirs + files:
            path = os.path.join(directory, name)
            values = {
                attr: os.getxattr(path, attr, follow_symlinks=False)
                for attr in os.listxattr(path, follow_symlinks=False)
            }
            if keep(values):
                hits.append("/" + os.path.relpath(path, mnt))
    return sorted(hits)


def make_tree(mnt: Path) -> None:
    for d in ("data/a/b", "data/c", "other"):
        (mnt / d).mkdir(parents=True)
    for i, f in enumerate(
        [
            "data/x.parquet",
            "data/a/y.parquet",
            "data/a/b/z.csv",
            "data/c/x.parquet",
            "other/w.parquet",
            "other/.hidden.parquet",
            "data/a/b/notes",
        ]
    ):
        (mnt / f).write_bytes(b"x" * i)
    os.link(mnt / "data/x.parquet", mnt / "other/hard.parquet")
    os.symlink("x.parquet", mnt / "data/link.parquet")
    os.setxattr(mnt / "data/a/y.parquet", "user.split", b"train")
    os.setxattr(mnt / "data/x.parquet", "user.split", b"test")
    os.setxattr(mnt / "data/c", "user.split", b"train")
    os.setxattr(
        mnt / "data/a/y.parquet", "user.experiment", json.dumps({"lr": 0.001, "team": "vision"}).encode()
    )
    os.setxattr(mnt / "data/x.parquet", "user.experiment", json.dumps({"lr": 0.1, "team": "vision"}).encode())
    os.setxattr(mnt / "data/c/x.parquet", "user.experiment", b"not json")


@pytest.mark.parametrize(
    ("under", "ours", "theirs"),
    [
        ("/", ["--name", "x.parquet"], ["-name", "x.parquet"]),
        ("/", ["--name-glob", "*.parquet"], ["-name", "*.parquet"]),
        ("/data", ["--name-glob", "*.parquet"], ["-name", "*.parquet"]),
        ("/data/a", ["--name-glob", "*"], ["-name", "*"]),
        ("/data", ["--name-glob", "[xy]*"], ["-name", "[xy]*"]),
        ("/other", ["--name-glob", "?ard.*"], ["-name", "?ard.*"]),
        ("/data/a/b", ["--name-glob", "b"], ["-name", "b"]),
    ],
)
def test_names_match_gnu_find(fs, under, ours, theirs) -> None:
    mnt, mounted = fs
    make_tree(mnt)
    assert found(mounted, "--under", under, *ours) == gnu_find(mnt, under, *theirs)


def test_xattrs_and_json_fields_match_a_walk(fs) -> None:
    mnt, mounted = fs
    make_tree(mnt)
    assert found(mounted, "--xattr", "user.split=train") == walk(
        mnt, lambda x: x.get("user.split") == b"train"
    )
    assert found(mounted, "--xattr", "user.split") == walk(mnt, lambda x: "user.split" in x)
    assert found(mounted, "--xattr", "user.split", "--name-glob", "*.parquet") == [
        "/data/a/y.parquet",
        "/data/x.parquet",
        "/other/hard.parquet",
    ]

    def experiment(keep):
        def check(xattrs):
            try:
                return keep(json.loads(xattrs["user.experiment"]))
            except (KeyError, ValueError):
                return False

        return check

    assert found(mounted, "--json-field", "experiment.lr < 0.01") == walk(
        mnt, experiment(lambda d: d["lr"] < 0.01)
    )
    assert found(mounted, "--json-field", 'experiment.team = "vision"', "--under", "/other") == [
        "/other/hard.parquet"
    ]
    lines = fusefs(mounted, "--json", "--xattr", "user.split=test").stdout.splitlines()
    records = [json.loads(line) for line in lines]  # a hard link: one line per path
    assert [record["path"] for record in records] == ["/data/x.parquet", "/other/hard.parquet"]
    for record in records:
        assert record["nlink"] == 2 and record["type"] == "file"
        assert record["size"] == os.stat(mnt / "data/x.parquet").st_size


def test_limit_and_bad_queries(fs) -> None:
    mnt, mounted = fs
    make_tree(mnt)
    result = fusefs(mounted, "--name-glob", "*.parquet", "--limit", "2")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    assert "more than 2 matches" in result.stderr
    for args, message in [
        ([], "at least one of"),
        (["--json-field", "experiment.lr ~ 1"], "not a condition"),
        (["--json-field", "experiment.lr < abc"], "not a JSON value"),
        (["--xattr", "color=red"], "not an xattr name"),
        (["--name", "a/b"], "cannot be empty or contain"),
        (["--name", "a", "--limit", "0"], "at least 1"),
        (["--name", "a", "--under", "data"], "starting with '/'"),
    ]:
        result = fusefs(mounted, *args)
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith("fusefs: error: ") and message in line
    result = fusefs(mounted, "--name", "a", "--fs", "nosuch")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"fusefs: error: no filesystem named 'nosuch' in {mounted.store}"]
    for under, reason in (("/nope", "No such file or directory"), ("/data/x.parquet", "Not a directory")):
        result = fusefs(mounted, "--name", "a", "--under", under)
        assert result.returncode == 1 and result.stderr.splitlines() == [
            f"fusefs: error: --under {under}: {reason}"
        ]


def test_concurrent_changes_keep_the_indexes_exact(fs, mount_fs) -> None:
    mnt, mounted = fs
    dirs = [mnt / f"d{i}" for i in range(4)]
    for d in dirs:
        d.mkdir()
    for i in range(40):
        (dirs[i % 4] / f"f{i}.dat").write_bytes(b"")

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for step in range(60):
            d = rng.choice(dirs)
            names = os.listdir(d)
            if not names:
                continue
            path = d / rng.choice(names)
            action = rng.randrange(5)
            try:
                if action == 0:
                    os.rename(path, rng.choice(dirs) / f"r{seed}-{step}.dat")
                elif action == 1:
                    os.link(path, rng.choice(dirs) / f"h{seed}-{step}.dat")
                elif action == 2 and len(names) > 3:
                    os.unlink(path)
                elif action == 3:
                    value = json.dumps({"step": step, "seed": seed}).encode()
                    os.setxattr(path, "user.meta", value)
                else:
                    os.removexattr(path, "user.meta")
            except (FileNotFoundError, FileExistsError, OSError):
                pass  # another worker got there first

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found(mounted, "--name-glob", "*.dat") == gnu_find(mnt, "/", "-name", "*.dat")
    assert found(mounted, "--xattr", "user.meta") == walk(mnt, lambda x: "user.meta" in x)
    assert found(mounted, "--json-field", "meta.step >= 30") == walk(
        mnt, lambda x: "user.meta" in x and json.loads(x["user.meta"])["step"] >= 30
    )
    mount_fs.unmount(mnt)
    store = open_store(mounted.store, read_only=True, exclusive=False)
    try:
        assert index.check(store, FsKeys(mounted.name)) == []
    finally:
        store.close()


def index_records(mounted) -> int:
    store = open_store(mounted.store, read_only=True, exclusive=False)
    try:
        ranges = FsKeys(mounted.name).index_ranges().values()
        return sum(len(store.transact(lambda tr, r=r: tr.get_range(*r))) for r in ranges)
    finally:
        store.close()


def test_indexes_are_opt_in_and_index_enable_turns_them_on(mount_fs) -> None:
    if mount_fs.target != "fusefs":
        pytest.skip("fusefs find reads fusefs' own store")
    mnt = mount_fs()
    mounted = mount_fs.mounts[mnt]
    make_tree(mnt)  # creates, links, symlinks, setxattrs
    os.rename(mnt / "data/c/x.parquet", mnt / "other/moved.parquet")
    os.removexattr(mnt / "data/x.parquet", "user.split")

    # Without the setting, nothing writes index records, and find says how to turn them on.
    refused = fusefs(mounted, "--name-glob", "*.parquet")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"fusefs: error: filesystem '{mounted.name}' has no search indexes: turn them on with "
        f"'fusefs index enable --name {mounted.name}' (unmounted), or make it with "
        "'fusefs mkfs --search-index'\n"
    )
    checked = index_command(mounted, "check")
    assert (checked.returncode, checked.stderr) == (1, refused.stderr)

    # A running mount would keep writing without them: enable refuses while one is alive.
    busy = index_command(mounted, "enable")
    assert busy.returncode == 1 and busy.stderr.startswith(f"fusefs: error: {mounted.name} is mounted (")
    assert busy.stderr.endswith("): unmount every mount to turn on its search indexes\n")
    assert busy.stderr.count("\n") == 1
    mount_fs.unmount(mnt)
    assert index_records(mounted) == 0

    enabled = index_command(mounted, "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert index_records(mounted) > 0
    checked = index_command(mounted, "check")
    assert checked.returncode == 0 and checked.stdout.endswith(
        f"0 problem(s) in the search indexes of '{mounted.name}'\n"
    ), checked.stderr
    again = index_command(mounted, "enable")
    assert again.returncode == 0 and "already has search indexes" in again.stdout

    # A mount started after enable keeps the indexes as it changes the tree.
    mount_fs.remount(mnt)
    os.rename(mnt / "other/moved.parquet", mnt / "data/back.parquet")
    os.setxattr(mnt / "data/back.parquet", "user.split", b"train")
    (mnt / "data/new.parquet").write_bytes(b"n")
    assert found(mounted, "--name-glob", "*.parquet") == gnu_find(mnt, "/", "-name", "*.parquet")
    assert found(mounted, "--xattr", "user.split=train") == walk(
        mnt, lambda x: x.get("user.split") == b"train"
    )
    mount_fs.unmount(mnt)
    assert index_command(mounted, "check").returncode == 0


def test_index_check_reports_findings_with_exit_1(fs, mount_fs) -> None:
    mnt, mounted = fs
    make_tree(mnt)
    mount_fs.unmount(mnt)
    store = open_store(mounted.store, exclusive=False)
    try:
        keys = FsKeys(mounted.name)
        store.transact(lambda tr: tr.clear_range(*keys.index_ranges()["N"]))
    finally:
        store.close()
    checked = index_command(mounted, "check")
    assert checked.returncode == 1, checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[-1].startswith(f"{len(lines) - 1} problem(s) in the search indexes of ")
    assert len(lines) > 1 and all(line.endswith(" is missing") for line in lines[:-1])
