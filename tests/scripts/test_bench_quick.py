"""Keeps scripts/bench.py from rotting: its smallest mode end to end on a local directory (no mount), and its
report and PNG chart on made-up figures for every column."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench.py"
sys.path.insert(0, str(REPO / "scripts"))

from bench import report  # noqa: E402
from bench.workloads import SIZES, catalogue  # noqa: E402


def test_smoke_mode_on_a_local_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--smoke",
            "--columns",
            "local",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "### Absolute figures" in proc.stdout
    assert "caches:" in proc.stdout
    [json_path] = out.glob("bench-*.json")
    doc = json.loads(json_path.read_text())
    assert doc["mode"] == "smoke"
    keys = [m["key"] for m in doc["metrics"]]
    assert len(keys) == len(set(keys)) == sum(len(w.metrics) for w in catalogue(SIZES["smoke"]))
    local = doc["results"]["local"]
    for key in keys:
        assert local[key]["value"] > 0, (key, local[key])
    assert local["small_4k.read"]["ops"] == SIZES["smoke"].small_4k
    assert local["conc_meta_flat.create"]["procs"] == SIZES["smoke"].procs
    assert list(out.glob("bench-*.md"))
    # Everything a workload made is gone again.
    assert [p.name for p in (tmp_path / "work" / "local").iterdir()] == []


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    # The image data decompresses to one filter byte plus 3 bytes per pixel per row.
    pos, idat = 8, b""
    while pos < len(data):
        n, k = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(k + body) & 0xFFFFFFFF
        if k == b"IDAT":
            idat += body
        pos += 12 + n
    assert len(zlib.decompress(idat)) == h * (1 + 3 * w)
    return w, h


def test_report_ratios_targets_and_chart() -> None:
    metrics = [m for w in catalogue(SIZES["smoke"]) for m in w.metrics]
    figures = {"local": 1000.0, "bindfs": 400.0, "passthrough": 100.0, "ours": 300.0}
    results = {
        col: {m.key: {"value": (1 / v if not m.higher_is_better else v), "unit": m.unit} for m in metrics}
        for col, v in figures.items()
    }
    results["ours"]["conc_small_4k.write"]["value"] = 600.0  # 2x the single-process figure
    del results["ours"]["tools.find"]
    md = report.markdown(metrics, results, list(figures))
    # create: ours / bindfs = 0.75 >= 0.5; ours / passthrough = 3 >= 1
    assert "| 0.30 | 0.75 met ≥0.5 | 3.00 met ≥1 |" in md
    # times: ours' time / bindfs' time = 400 / 300
    assert "1.33 met ≤2" in md
    assert "2.00 met ≥1.5" in md and "1.00 missed ≥1.5" in md
    verdicts = report.evaluate(metrics, results)
    assert {v["verdict"] for v in verdicts} == {"met", "missed", "not measured"}
    assert [v for v in verdicts if v["metric"] == "bigfile.seq_read_cold" and v["vs"] == "local"][0][
        "verdict"
    ] == "missed"
    png = report.chart(metrics, results, list(figures), "test", ["a note; with punctuation: (x) 1/2 >= 0.5"])
    assert png is not None
    w, h = _png_size(png)
    assert w > 500 and h > len(metrics) * 3 * 9
