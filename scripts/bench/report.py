"""Tables (markdown), ratios against the targets of issues 5 and 14, and the PNG chart of the ratios."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.png import Bar, bar_chart
from bench.workloads import Metric

OURS = "ours"
REFERENCES = ["local", "bindfs", "passthrough", "juicefs"]


@dataclass(frozen=True)
class Target:
    vs: str  # a reference column, or "single" for ours (4 processes) / ours (1 process)
    op: str  # ">=" or "<="
    bound: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.op == ">=" else ratio <= self.bound

    def text(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'}{self.bound:g}"


SCALING_OF = {
    "conc_meta_flat": "meta_flat",
    "conc_meta_tree": "meta_tree",
    "conc_small_4k": "small_4k",
    "conc_small_64k": "small_64k",
}


def _targets_issue5(m: Metric) -> list[Target]:
    workload, phase = m.key.split(".", 1)
    out = [Target("passthrough", ">=" if m.higher_is_better else "<=", 1.0)]  # beat the Python passthrough
    if workload in ("meta_flat", "meta_tree") and phase in ("create", "stat", "rename", "unlink"):
        out.append(Target("bindfs", ">=", 0.5))
    elif workload in ("small_4k", "small_64k"):
        out.append(Target("bindfs", ">=", 0.5))
    elif workload == "bigfile" and phase in ("seq_write_fsync", "seq_read_cold"):
        out.append(Target("local", ">=", 0.7))
    elif workload == "bigfile" and phase == "rand_read_4k":
        out.append(Target("bindfs", ">=", 0.5))
    elif workload == "tools":
        out.append(Target("bindfs", "<=", 2.0))
    if workload in SCALING_OF:
        out.append(Target("single", ">=", 1.5))
    return out


def _targets_issue14(m: Metric) -> list[Target]:
    workload, phase = m.key.split(".", 1)
    out = [Target("juicefs", ">=" if m.higher_is_better else "<=", 1.0)]  # at least JuiceFS everywhere
    if workload == "tools":
        out.append(Target("bindfs", "<=", 2.0))
    elif workload == "bigfile" and phase in ("seq_write_fsync", "seq_read_cold"):
        out.append(Target("local", ">=", 0.8))
    elif workload in SCALING_OF and phase in ("create", "unlink", "write"):
        out.append(Target("single", ">=", 1.5))
    return out


ISSUES = {5: _targets_issue5, 14: _targets_issue14}


def targets(m: Metric, issue: int = 5) -> list[Target]:
    """An issue's targets for the embedded-store column, as ratios ours ÷ reference (times: ours ÷ theirs)."""
    return ISSUES[issue](m)


def shown_targets(m: Metric) -> dict[str, Target]:
    """The target marked beside each reference in the ratio table and chart: issue 5's, and for JuiceFS
    (which issue 5 does not compare against) issue 14's."""
    shown = {t.vs: t for t in targets(m, 14) if t.vs == "juicefs"}
    shown.update({t.vs: t for t in targets(m, 5)})
    return shown


def fmt_num(v: float | None) -> str:
    """Figures and ratios alike: thousands spaced, about three significant digits, no exponent."""
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}".replace(",", " ")
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.2g}"


def value(results: dict[str, Any], col: str, key: str) -> float | None:
    r = results.get(col, {}).get(key)
    if isinstance(r, dict) and isinstance(r.get("value"), (int, float)) and r["value"] > 0:
        return float(r["value"])
    return None


def ratio(results: dict[str, Any], a: str, b: str, key: str) -> float | None:
    va, vb = value(results, a, key), value(results, b, key)
    return None if va is None or vb is None else va / vb


def scaling(results: dict[str, Any], col: str, key: str) -> float | None:
    workload, phase = key.split(".", 1)
    if workload not in SCALING_OF:
        return None
    single = value(results, col, f"{SCALING_OF[workload]}.{phase}")
    conc = value(results, col, key)
    return None if single is None or conc is None else conc / single


def evaluate(metrics: list[Metric], results: dict[str, Any], issue: int = 5) -> list[dict[str, Any]]:
    """Every target of an issue for the `ours` column with its ratio and verdict (met / missed / not
    measured)."""
    out = []
    for m in metrics:
        for t in targets(m, issue):
            r = scaling(results, OURS, m.key) if t.vs == "single" else ratio(results, OURS, t.vs, m.key)
            out.append(
                {
                    "metric": m.key,
                    "vs": t.vs,
                    "target": f"{t.op}{t.bound:g}",
                    "ratio": r,
                    "verdict": "not measured" if r is None else "met" if t.met(r) else "missed",
                }
            )
    return out


def ratio_cells(
    results: dict[str, Any], m: Metric, ours_cols: list[str], refs: list[str]
) -> Iterator[tuple[str, str, float | None, Target | None]]:
    """(ours column, reference, ratio, the target shown for that pair if any) for one metric."""
    tg = shown_targets(m)
    for o in ours_cols:
        for r in refs:
            yield o, r, ratio(results, o, r, m.key), (tg.get(r) if o == OURS else None)


def _cell_error(results: dict[str, Any], col: str, key: str) -> str | None:
    r = results.get(col, {}).get(key)
    if isinstance(r, dict) and "error" in r:
        return "error"
    if isinstance(r, dict) and "skipped" in r:
        return "skipped"
    return None


def _table(title: str, head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """A markdown table under a heading; the first `left` columns are left-aligned, the rest right."""
    align = "|" + "---|" * left + "---:|" * (len(head) - left)
    return (
        [f"### {title}", "", "| " + " | ".join(head) + " |", align]
        + ["| " + " | ".join(r) + " |" for r in rows]
        + [""]
    )


def markdown(metrics: list[Metric], results: dict[str, Any], columns: list[str]) -> str:
    ours_cols = [c for c in columns if c.startswith(OURS)]
    refs = [c for c in REFERENCES if c in columns]
    rows = []
    for m in metrics:
        cells = [m.label, m.unit + ("" if m.higher_is_better else " (lower is better)")]
        for c in columns:
            v = value(results, c, m.key)
            cells.append(fmt_num(v) if v is not None else (_cell_error(results, c, m.key) or "—"))
        rows.append(cells)
    lines = _table("Absolute figures", ["workload", "unit", *columns], rows, left=2)
    if ours_cols and refs:
        rows = []
        for m in metrics:
            cells = []
            for _, _, x, t in ratio_cells(results, m, ours_cols, refs):
                cell = fmt_num(x)
                if t is not None:
                    cell += (
                        f" (target {t.text()})"
                        if x is None
                        else f" {'met' if t.met(x) else 'missed'} {t.text()}"
                    )
                cells.append(cell)
            rows.append([m.label, *cells])
        title = (
            "Ratios: ours ÷ each other column (times: ours' time ÷ theirs), with the targets of issue 5 "
            "(against JuiceFS: issue 14's)"
        )
        lines += _table(title, ["workload", *(f"{o} ÷ {r}" for o in ours_cols for r in refs)], rows)
    conc = [m for m in metrics if m.key.split(".")[0] in SCALING_OF]
    if conc:
        rows = []
        for m in conc:
            cells = []
            for c in columns:
                x = scaling(results, c, m.key)
                cell = fmt_num(x)
                if c == OURS and x is not None:
                    cell += f" {'met' if x >= 1.5 else 'missed'} ≥1.5"
                cells.append(cell)
            rows.append([m.label, *cells])
        title = "4 processes at once: aggregate ÷ the single-process figure of the same column"
        lines += _table(title, ["workload", *columns], rows)
    if OURS in columns:
        lines.append(_summary("Issue 5 targets (embedded store)", evaluate(metrics, results, 5)))
        lines.append("")
        lines += _issue14_table(metrics, results)
    return "\n".join(lines)


def _summary(what: str, verdicts: list[dict[str, Any]]) -> str:
    met = sum(v["verdict"] == "met" for v in verdicts)
    missed = sum(v["verdict"] == "missed" for v in verdicts)
    unmeasured = sum(v["verdict"] == "not measured" for v in verdicts)
    return f"{what}: {met} of {len(verdicts)} met, {missed} missed, {unmeasured} not measured."


_VS_TEXT = {"single": "ours (1 process)"}


def _issue14_table(metrics: list[Metric], results: dict[str, Any]) -> list[str]:
    """Issue 14's targets one per row, then "issue 14 targets: N of M met"."""
    labels = {m.key: m.label for m in metrics}
    verdicts = evaluate(metrics, results, 14)
    rows = [
        [
            labels[v["metric"]],
            f"ours ÷ {_VS_TEXT.get(v['vs'], v['vs'])}",
            v["target"].replace(">=", "≥").replace("<=", "≤"),
            fmt_num(v["ratio"]),
            v["verdict"],
        ]
        for v in verdicts
    ]
    title = "Issue 14 targets (embedded store; times: ours' time ÷ theirs)"
    table = _table(title, ["workload", "ratio", "target", "value", "verdict"], rows, left=3)
    return table + [_summary("Issue 14 targets", verdicts), ""]


COLORS = {
    "local": (120, 120, 120),
    "bindfs": (31, 119, 180),
    "passthrough": (255, 127, 14),
    "juicefs": (44, 160, 44),
}
LIGHT = {
    "local": (190, 190, 190),
    "bindfs": (140, 190, 225),
    "passthrough": (255, 195, 140),
    "juicefs": (150, 215, 150),
}


def chart(
    metrics: list[Metric], results: dict[str, Any], columns: list[str], title: str, notes: list[str]
) -> bytes | None:
    """Bars of ours ÷ each reference per metric, as relative speed (time rows inverted), log scale."""
    ours_cols = [c for c in columns if c.startswith(OURS)]
    refs = [c for c in REFERENCES if c in columns]
    if not ours_cols or not refs:
        return None
    groups = []
    for m in metrics:
        bars = []
        for o, r, x, t in ratio_cells(results, m, ours_cols, refs):
            met = t.met(x) if (t is not None and x is not None) else None
            if not m.higher_is_better:
                x = None if x is None else 1 / x
                bound = None if t is None else 1 / t.bound
            else:
                bound = None if t is None else t.bound
            bars.append(Bar(x, (COLORS if o == OURS else LIGHT)[r], bound, met))
        groups.append((m.label, bars))
    legend = [((COLORS if o == OURS else LIGHT)[r], f"{o} / {r}") for o in ours_cols for r in refs]
    return bar_chart(title, notes, groups, legend)
