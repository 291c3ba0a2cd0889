"""Named change-log consumers on a real mount: ``fusefs log --follow --json --consumer`` and the example
FTS5 consumer (scripts/fts_consumer.py) resume after kill -9 of themselves and of the daemon with no
record lost, and every repeated record is a detectable duplicate (same id, same content)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import wait_for

REPO = Path(__file__).resolve().parent.parent.parent


def _consumer(data_mounts, mp: Path, out: Path, *args: str) -> subprocess.Popen:
    m = data_mounts.factory.mounts[mp]
    cmd = [sys.executable, "-m", "fusefs", "log", *args, "--store", m.store, "--name", m.name]
    with open(out, "ab") as sink:
        return subprocess.Popen(
            cmd, cwd=m.workdir, env=data_mounts.factory._env(m), stdout=sink, stderr=subprocess.PIPE
        )


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _records(out: Path) -> list[dict]:
    # A line cut by the kill is not a record the consumer delivered: its page was not acknowledged.
    lines = out.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _full_log(data_mounts, mp: Path) -> list[dict]:
    out = data_mounts.cli(mp, "log", "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def _lines(out: Path) -> int:
    return len(out.read_bytes().splitlines()) if out.exists() else 0


@pytest.mark.chaos
def test_a_json_consumer_loses_nothing_across_kills_of_itself_and_of_the_daemon(data_mounts, tmp_path):
    mp = data_mounts.mount(options=("shared",))
    out = tmp_path / "records.jsonl"
    made = []
    for round_ in range(4):
        proc = _consumer(data_mounts, mp, out, "--follow", "--json", "--consumer", "c")
        for i in range(30):
            name = f"r{round_}-{i}"
            (mp / name).write_bytes(b"x")
            made.append(name)
        seen = _lines(out)
        assert wait_for(lambda: _lines(out) > seen, timeout=60), "the consumer printed nothing"
        _kill(proc)
        if round_ == 1:
            data_mounts.kill(mp)  # the daemon too, between two runs of the consumer
            data_mounts.start(mp)
    drain = _consumer(data_mounts, mp, out, "--json", "--consumer", "c")
    assert drain.wait(timeout=120) == 0, drain.stderr.read() if drain.stderr else ""

    delivered = _records(out)
    by_id: dict[str, dict] = {}
    for record in delivered:
        assert by_id.setdefault(record["id"], record) == record, "two different records with one id"
    ids = [record["id"] for record in delivered]
    full = _full_log(data_mounts, mp)
    assert sorted(by_id) == [record["id"] for record in full]  # nothing lost, in commit order
    assert ids == sorted(ids) or len(ids) > len(by_id)  # out of order only where a page came again
    created = {r["path"] for r in by_id.values() if r["op"] == "create"}
    assert {f"/{name}" for name in made} <= created
    listing = data_mounts.cli(mp, "consumer", "list").stdout
    assert listing.startswith("c\tcursor ") and "\tunread 0\t" in listing, listing


def test_the_fts_example_resumes_after_kill_9_and_mirrors_every_name(data_mounts, tmp_path):
    mp = data_mounts.mount(options=("shared",))
    m = data_mounts.factory.mounts[mp]
    db = tmp_path / "names.db"
    script = [sys.executable, str(REPO / "scripts" / "fts_consumer.py")]
    follow = [*script, "follow", "--store", m.store, "--name", m.name, "--db", str(db), "--interval", "0.05"]
    env = {**data_mounts.factory._env(m), "PYTHONPATH": str(REPO)}
    (mp / "reports").mkdir()
    expected = set()
    for round_ in range(3):
        proc = subprocess.Popen(follow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(40):
            name = f"quarterly-report-{round_}-{i}.csv"
            (mp / "reports" / name).write_bytes(b"x")
            expected.add(f"/reports/{name}")
        os.rename(mp / "reports" / f"quarterly-report-{round_}-0.csv", mp / f"moved-report-{round_}.csv")
        os.unlink(mp / "reports" / f"quarterly-report-{round_}-1.csv")
        expected -= {f"/reports/quarterly-report-{round_}-0.csv", f"/reports/quarterly-report-{round_}-1.csv"}
        expected.add(f"/moved-report-{round_}.csv")
        wait_for(lambda: db.exists(), timeout=30)
        _kill(proc)
        if round_ == 0:
            data_mounts.kill(mp)
            data_mounts.start(mp)
    os.rename(mp / "reports", mp / "archive")  # a directory: the paths below it move too
    expected = {path.replace("/reports/", "/archive/") for path in expected} | {"/archive"}
    done = subprocess.run([*follow, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "lag " in done.stderr and "missed" not in done.stderr
    found = subprocess.run(
        [*script, "search", "--db", str(db), "report*"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(found) == sorted(path for path in expected if "report" in path)
    with sqlite3.connect(db) as mirror:
        assert {path for (path,) in mirror.execute("SELECT path FROM entries")} == expected
