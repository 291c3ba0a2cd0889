"""The workloads, driven identically on every column through worker processes (scripts/bench/worker.py).

Each workload is a sequence of phases; a phase sends one command to each of its workers at once and is
measured as (sum of the workers' operations) / (latest end - earliest start).  Caches are dropped
(``sync; echo 3 > /proc/sys/vm/drop_caches``) before every workload and wherever a phase says cold.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().with_name("worker.py")
MiB = 1 << 20
MB = 1_000_000
START_DELAY = 0.05  # workers of one phase start together this long after the driver sends the commands


# --------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    mode: str
    meta_files: int  # files of the metadata workloads (flat: one directory; tree: spread over tree_dirs)
    tree_dirs: int
    small_4k: int  # number of 4 KiB files
    small_64k: int  # number of 64 KiB files
    big_bytes: int
    big_block: int
    rand_count: int  # random 4 KiB reads / writes: at most this many ...
    rand_seconds: float  # ... or this long, whichever comes first
    pass_seconds: float  # stat and list phases repeat whole passes for at least this long
    tools_tree: str  # "full" (the stdlib Lib/ directory) or "quick" (Lib/ without test/) or "smoke"
    procs: int
    phase_timeout: float


SIZES = {
    "full": Sizes("full", 10_000, 100, 10_000, 1_000, 1024 * MiB, MiB, 20_000, 10.0, 0.5, "full", 4, 1800.0),
    "quick": Sizes("quick", 2_000, 20, 2_000, 200, 256 * MiB, MiB, 5_000, 2.0, 0.25, "quick", 4, 600.0),
    # For the test suite only: every code path, figures meaningless.
    "smoke": Sizes("smoke", 200, 4, 200, 20, 8 * MiB, MiB, 300, 0.5, 0.02, "smoke", 4, 120.0),
}


# ------------------------------------------------------------------------------------- cache dropping


class CacheDropper:
    """``sync`` then ``echo 3 > /proc/sys/vm/drop_caches``: page cache, dentries and inodes, for the local
    filesystem and FUSE mounts alike (the kernel forgets FUSE inodes too, so the next access is a LOOKUP
    and a READ to the daemon).  Needs root; without it, only ``sync`` is done and the report says so."""

    def __init__(self) -> None:
        self.count = 0
        self.failed: str | None = None

    def describe(self) -> str:
        if self.failed:
            return f"NOT dropped ({self.failed}): only sync(2) before cold phases, so cold figures are warm"
        return (
            "sync(2) then `echo 3 > /proc/sys/vm/drop_caches` (page cache + dentries + inodes, local and "
            "FUSE alike) before each workload and before each cold phase; FUSE mounts are not remounted, and "
            "caches inside the daemons (e.g. fusefs's own) are not dropped"
        )

    def __call__(self) -> None:
        os.sync()
        if self.failed:
            return
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            self.count += 1
        except OSError as exc:
            self.failed = f"{type(exc).__name__}: {exc.strerror or exc}"


# ------------------------------------------------------------------------------------------ workers


class WorkerError(RuntimeError):
    pass


class Workers:
    """`n` worker processes speaking JSON lines; all get their command before any reply is read."""

    def __init__(self, n: int, timeout: float) -> None:
        self.timeout = timeout
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-u", str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd="/",
                text=True,
                bufsize=1,
            )
            for _ in range(n)
        ]
        self.run([{"op": "ping"}] * n)  # all started and imported before the first timed phase

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in self.procs:
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def run(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert len(cmds) == len(self.procs)
        start_at = time.monotonic() + START_DELAY
        for p, c in zip(self.procs, cmds, strict=True):
            assert p.stdin is not None
            p.stdin.write(json.dumps({**c, "start_at": start_at}) + "\n")
            p.stdin.flush()
        replies: dict[int, dict[str, Any]] = {}
        sel = selectors.DefaultSelector()
        for i, p in enumerate(self.procs):
            assert p.stdout is not None
            sel.register(p.stdout, selectors.EVENT_READ, i)
        deadline = time.monotonic() + self.timeout
        try:
            while len(replies) < len(self.procs):
                left = deadline - time.monotonic()
                if left <= 0:
                    for p in self.procs:
                        p.kill()
                    raise WorkerError(f"phase {cmds[0].get('op')} timed out after {self.timeout:.0f} s")
                for key, _ in sel.select(timeout=min(left, 1.0)):
                    i = key.data
                    line = self.procs[i].stdout.readline()  # type: ignore[union-attr]
                    if not line:
                        raise WorkerError(
                            f"worker {i} exited ({self.procs[i].wait()}) during {cmds[i]['op']}"
                        )
                    replies[i] = json.loads(line)
                    sel.unregister(key.fileobj)
        finally:
            sel.close()
        out = [replies[i] for i in range(len(self.procs))]
        for r in out:
            if not r["ok"]:
                raise WorkerError(r["error"])
        return out


def aggregate(replies: list[dict[str, Any]]) -> dict[str, float]:
    t0 = min(r["t0"] for r in replies)
    t1 = max(r["t1"] for r in replies)
    secs = max(t1 - t0, 1e-9)
    return {
        "ops": sum(r["ops"] for r in replies),
        "bytes": sum(r.get("bytes", 0) for r in replies),
        "seconds": secs,
        "procs": len(replies),
    }


# ------------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Metric:
    key: str  # workload.phase
    label: str
    unit: str  # ops/s, entries/s, files/s, MB/s, IOPS, s
    higher_is_better: bool = True


def _meta_metrics(w: str, what: str) -> list[Metric]:
    return [
        Metric(f"{w}.create", f"{what}: create", "ops/s"),
        Metric(f"{w}.stat", f"{what}: stat", "ops/s"),
        Metric(f"{w}.list", f"{what}: list (readdir)", "entries/s"),
        Metric(f"{w}.rename", f"{what}: rename", "ops/s"),
        Metric(f"{w}.unlink", f"{what}: unlink", "ops/s"),
    ]


def _small_metrics(w: str, what: str) -> list[Metric]:
    return [
        Metric(f"{w}.write", f"{what}: write", "files/s"),
        Metric(f"{w}.read", f"{what}: read (cold)", "files/s"),
    ]


@dataclass
class Context:
    workers: Callable[[int], Workers]
    drop: CacheDropper
    sizes: Sizes
    cache: Path
    notes: list[str]


Result = dict[str, dict[str, Any]]  # metric key -> {"value", "unit", ...}


def _rate(agg: dict[str, float], unit: str, ops: float | None = None) -> dict[str, Any]:
    n = agg["ops"] if ops is None else ops
    value = (agg["bytes"] / MB if unit == "MB/s" else n) / agg["seconds"]
    return {"value": value, "unit": unit, **agg}


# ------------------------------------------------------------------------------------------ workloads


def meta(ctx: Context, base: str, layout: str, procs: int) -> Result:
    s = ctx.sizes
    if layout == "flat":
        # All workers in one shared directory, each with its own names.
        cmds = [
            {"op": "meta", "root": base, "dirs": [""], "per_dir": s.meta_files // procs, "prefix": f"w{k}_"}
            for k in range(procs)
        ]
    else:
        per_dir = s.meta_files // s.tree_dirs
        cmds = [
            {
                "op": "meta",
                "root": base,
                "dirs": [f"d{j:04d}" for j in range(k, s.tree_dirs, procs)],
                "per_dir": per_dir,
                "prefix": "",
            }
            for k in range(procs)
        ]
    os.makedirs(base)
    out: Result = {}
    with ctx.workers(procs) as w:
        for phase in ("create", "stat", "list", "rename", "unlink"):
            agg = aggregate(w.run([{**c, "phase": phase, "min_seconds": s.pass_seconds} for c in cmds]))
            out[phase] = _rate(agg, "entries/s" if phase == "list" else "ops/s")
    return out


def small(ctx: Context, base: str, size: int, count: int, procs: int) -> Result:
    dirs = [os.path.join(base, f"w{k}") for k in range(procs)]
    for d in dirs:
        os.makedirs(d)
    cmds = [{"dir": d, "count": count // procs, "size": size} for d in dirs]
    out: Result = {}
    with ctx.workers(procs) as w:
        out["write"] = _rate(aggregate(w.run([{**c, "op": "small_write"} for c in cmds])), "files/s")
        t = time.monotonic()
        ctx.drop()
        out["write"]["sync_and_drop_s"] = time.monotonic() - t
        out["read"] = _rate(aggregate(w.run([{**c, "op": "small_read"} for c in cmds])), "files/s")
    for r in out.values():
        r["MB_per_s"] = r["bytes"] / MB / r["seconds"]
    return out


def bigfile(ctx: Context, base: str) -> Result:
    s = ctx.sizes
    os.makedirs(base)
    path = os.path.join(base, "big")
    common = {"path": path, "size": s.big_bytes, "block": s.big_block}
    rand = {"path": path, "size": s.big_bytes, "count": s.rand_count, "seconds": s.rand_seconds}
    out: Result = {}
    with ctx.workers(1) as w:
        out["seq_write_fsync"] = _rate(aggregate(w.run([{**common, "op": "big_write"}])), "MB/s")
        ctx.drop()
        out["seq_read_cold"] = _rate(aggregate(w.run([{**common, "op": "big_read"}])), "MB/s")
        ctx.drop()
        out["rand_read_4k"] = _rate(aggregate(w.run([{**rand, "op": "rand_read", "seed": 1}])), "IOPS")
        out["rand_write_4k"] = _rate(aggregate(w.run([{**rand, "op": "rand_write", "seed": 2}])), "IOPS")
    return out


GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}


def source_tarball(cache: Path, tree: str) -> tuple[Path, dict[str, Any]]:
    """An uncompressed tar of this Python's standard library source (Lib/), made once and cached.

    Without site-packages, __pycache__ and the config-* directory (a static library, not source);
    "quick" also leaves out test/, "smoke" keeps only json/ and email/.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ver = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    tar_path = cache / f"stdlib-{ver}-{tree}.tar"
    info_path = tar_path.with_suffix(".json")
    if tar_path.exists() and info_path.exists():
        return tar_path, json.loads(info_path.read_text())

    def keep(rel: Path) -> bool:
        top = rel.parts[0]
        if top == "site-packages" or top.startswith("config-") or "__pycache__" in rel.parts:
            return False
        if tree == "quick" and top == "test":
            return False
        if tree == "smoke" and top not in ("json", "email"):
            return False
        return True

    files = dirs = nbytes = 0
    tmp = tar_path.with_suffix(".tmp")
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for root, dnames, fnames in os.walk(stdlib):
            dnames.sort()
            rel_root = Path(root).relative_to(stdlib)
            dnames[:] = [d for d in dnames if keep(rel_root / d)]
            for name in sorted(fnames):
                rel = rel_root / name
                if not keep(rel):
                    continue
                full = Path(root) / name
                if full.is_symlink() or not full.is_file():
                    continue
                tf.add(full, arcname=str(Path("Lib") / rel), recursive=False)
                files += 1
                nbytes += full.stat().st_size
            dirs += len(dnames)
    info = {"source": str(stdlib), "python": ver, "tree": tree, "files": files, "dirs": dirs, "bytes": nbytes}
    tmp.rename(tar_path)
    info_path.write_text(json.dumps(info))
    return tar_path, info


def tools(ctx: Context, base: str) -> Result:
    tarball, info = source_tarball(ctx.cache, ctx.sizes.tools_tree)
    os.makedirs(base)
    tree = os.path.join(base, "Lib")
    git = ["git", "-c", "gc.auto=0", "-c", "core.fsmonitor=false"]
    steps: list[tuple[str | None, list[str], str]] = [
        ("tar_x", ["tar", "-xf", str(tarball), "-C", base], base),
        ("find", ["find", tree], base),
        ("du_s", ["du", "-s", tree], base),
        (None, git + ["init", "-q"], tree),
        ("git_add", git + ["add", "-A"], tree),
        ("git_commit", git + ["commit", "-q", "-m", "bench"], tree),
        ("rm_rf", ["rm", "-rf", tree], base),
    ]
    out: Result = {}
    with ctx.workers(1) as w:
        for name, argv, cwd in steps:
            agg = aggregate(w.run([{"op": "run", "argv": argv, "cwd": cwd, "env": GIT_ENV}]))
            if name:
                out[name] = {"value": agg["seconds"], "unit": "s", **agg, "files": info["files"]}
            if name in ("tar_x", "git_commit"):
                os.sync()  # write-back of the previous step does not bleed into the next one's time
    return out


# ---------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    metrics: list[Metric]
    run: Callable[[Context, str], Result]


def catalogue(sizes: Sizes) -> list[Workload]:
    s = sizes
    per = s.meta_files // s.tree_dirs
    p = s.procs
    return [
        Workload(
            "meta_flat",
            f"{s.meta_files} empty files in one directory",
            _meta_metrics("meta_flat", f"meta, {s.meta_files} files in 1 dir"),
            lambda c, b: meta(c, b, "flat", 1),
        ),
        Workload(
            "meta_tree",
            f"{s.tree_dirs} dirs x {per} empty files",
            _meta_metrics("meta_tree", f"meta, {s.tree_dirs} dirs x {per} files"),
            lambda c, b: meta(c, b, "tree", 1),
        ),
        Workload(
            "small_4k",
            f"{s.small_4k} x 4 KiB files",
            _small_metrics("small_4k", f"{s.small_4k} x 4 KiB files"),
            lambda c, b: small(c, b, 4096, s.small_4k, 1),
        ),
        Workload(
            "small_64k",
            f"{s.small_64k} x 64 KiB files",
            _small_metrics("small_64k", f"{s.small_64k} x 64 KiB files"),
            lambda c, b: small(c, b, 65536, s.small_64k, 1),
        ),
        Workload(
            "bigfile",
            f"one {s.big_bytes // MiB} MiB file",
            [
                Metric(
                    "bigfile.seq_write_fsync",
                    f"{s.big_bytes // MiB} MiB file: seq write 1 MiB + fsync",
                    "MB/s",
                ),
                Metric("bigfile.seq_read_cold", f"{s.big_bytes // MiB} MiB file: seq read (cold)", "MB/s"),
                Metric(
                    "bigfile.rand_read_4k", f"{s.big_bytes // MiB} MiB file: random 4 KiB read (cold)", "IOPS"
                ),
                Metric(
                    "bigfile.rand_write_4k",
                    f"{s.big_bytes // MiB} MiB file: random 4 KiB write + fsync",
                    "IOPS",
                ),
            ],
            bigfile,
        ),
        Workload(
            "tools",
            "tar -x, find, du -s, git add -A, git commit, rm -rf of a source tree",
            [
                Metric("tools.tar_x", "tools: tar -x", "s", False),
                Metric("tools.find", "tools: find", "s", False),
                Metric("tools.du_s", "tools: du -s", "s", False),
                Metric("tools.git_add", "tools: git add -A", "s", False),
                Metric("tools.git_commit", "tools: git commit", "s", False),
                Metric("tools.rm_rf", "tools: rm -rf", "s", False),
            ],
            tools,
        ),
        Workload(
            "conc_meta_flat",
            f"{p} processes, {s.meta_files} files in one shared directory",
            _meta_metrics("conc_meta_flat", f"{p} procs: meta, 1 dir"),
            lambda c, b: meta(c, b, "flat", p),
        ),
        Workload(
            "conc_meta_tree",
            f"{p} processes, {s.tree_dirs} dirs x {per} files (dirs split)",
            _meta_metrics("conc_meta_tree", f"{p} procs: meta, tree"),
            lambda c, b: meta(c, b, "tree", p),
        ),
        Workload(
            "conc_small_4k",
            f"{p} processes, {s.small_4k} x 4 KiB files in all",
            _small_metrics("conc_small_4k", f"{p} procs: 4 KiB files"),
            lambda c, b: small(c, b, 4096, s.small_4k, p),
        ),
        Workload(
            "conc_small_64k",
            f"{p} processes, {s.small_64k} x 64 KiB files in all",
            _small_metrics("conc_small_64k", f"{p} procs: 64 KiB files"),
            lambda c, b: small(c, b, 65536, s.small_64k, p),
        ),
    ]


GROUPS = {
    "meta": ["meta_flat", "meta_tree"],
    "small": ["small_4k", "small_64k"],
    "big": ["bigfile"],
    "conc": ["conc_meta_flat", "conc_meta_tree", "conc_small_4k", "conc_small_64k"],
}


def select(all_: list[Workload], only: str | None) -> list[Workload]:
    if not only:
        return all_
    names: list[str] = []
    for tok in only.split(","):
        tok = tok.strip()
        if not tok:
            continue
        names.extend(GROUPS.get(tok, [tok]))
    known = {w.name for w in all_}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(
            f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}, "
            f"groups: {', '.join(GROUPS)}"
        )
    return [w for w in all_ if w.name in names]


def remove_tree(path: str) -> None:
    """Untimed clean-up through the column itself (so the filesystem frees what the workload made)."""
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            subprocess.run(["rm", "-rf", path], capture_output=True)
