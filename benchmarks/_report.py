"""What the user sees: the table (text or Markdown), the JSON file and the plots."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._core import Result

__all__ = ["format_table", "load_json", "write_json", "write_plots"]

PACKAGES = (
    "anyway",
    "anyio",
    "trio",
    "uvloop",
    "httpx",
    "tenacity",
    "stamina",
    "backoff",
    "aiolimiter",
    "aiometer",
    "purgatory",
)
HEADER = ("case", "variant", "backend", "median", "spread", "baseline", "ratio", "target")


def format_value(value: float | None, row: Result) -> str:
    """A time per operation in ns/us/ms, or a metric with its unit."""
    if value is None or math.isnan(value):
        return "-"
    if row.kind == "timing":
        if abs(value) < 1e3:
            return f"{value:.0f} ns"
        return f"{value / 1e3:.2f} us" if abs(value) < 1e6 else f"{value / 1e6:.2f} ms"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f} {row.unit}"
    return f"{value:.3g} {row.unit}"


def _cells(row: Result, case: str, plus_minus: str) -> tuple[str, ...]:
    if row.baseline is None:
        baseline = "-"
    elif row.fixed_baseline:
        baseline = row.baseline
    elif row.baseline == row.label and row.ratio == 1.0:
        baseline = "(baseline)"
    else:
        baseline = format_value(row.baseline_median, row)
    spread = "-"
    if len(row.values) > 1 and row.median:
        spread = f"{plus_minus}{(row.q3 - row.q1) / 2 / abs(row.median) * 100:.1f}%"
    verdict = {True: " ok", False: " MISSED", None: ""}[row.met]
    return (
        case,
        row.label,
        row.backend,
        format_value(row.median, row),
        spread,
        baseline,
        "-" if row.ratio is None else f"{row.ratio:.2f}x",
        f"{_overhead(row)}{row.target}{verdict}" if row.target else "",
    )


def _overhead(row: Result) -> str:
    """The overhead in front of an overhead target: ``+246 ns <= +500 ns``."""
    if row.overhead is None or not row.target or not row.target.startswith("<= +"):
        return ""
    return f"+{row.overhead:.0f} ns " if row.overhead >= 0 else f"{row.overhead:.0f} ns "


def _case_title(row: Result) -> str:
    return f"{row.case} (per {row.unit})" if row.kind == "timing" else row.case


def format_table(
    results: Sequence[Result], titles: dict[str, str], *, markdown: bool = False
) -> str:
    """One table per family, then the details, skips, errors and targets."""
    families: dict[str, list[tuple[str, ...]]] = {}
    previous = None
    for row in results:
        if row.status != "ok":
            continue
        case = _case_title(row)
        cells = _cells(row, case if case != previous else "", "±" if markdown else "+-")
        families.setdefault(row.family, []).append(cells)
        previous = case
    lines: list[str] = []
    if markdown:
        for family, rows in families.items():
            lines += ["", f"### {titles.get(family, family)}", ""]
            lines.append("| " + " | ".join(HEADER) + " |")
            lines.append("|---|---|---|---:|---:|---|---:|---|")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        return "\n".join(lines).strip() + "\n"
    everything = [HEADER, *(r for rows in families.values() for r in rows)]
    widths = [max(len(r[i]) for r in everything) for i in range(len(HEADER))]

    def fmt(cells: Sequence[str]) -> str:
        right = (3, 4, 6)
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    for family, rows in families.items():
        lines += ["", f"== {family}: {titles.get(family, family)}", fmt(HEADER)]
        lines.append(fmt(["-" * w for w in widths]))
        for cells in rows:
            if cells[0] and not lines[-1].startswith("-"):
                lines.append("")  # a blank line between cases
            lines.append(fmt(cells))
    notes = [
        ("Details", [r for r in results if r.status == "ok" and r.extra], None),
        ("Skipped", [r for r in results if r.status == "skipped"], "reason"),
        ("Errors", [r for r in results if r.status == "error"], "reason"),
    ]
    for title, rows_, field in notes:
        seen: set[str] = set()
        if rows_:
            lines += ["", f"{title}:"]
        for r in rows_:
            what = (
                r.reason if field else ", ".join(f"{k}={v:.6g}" for k, v in sorted(r.extra.items()))
            )
            line = f"  {r.family}/{r.case}: {r.label} on {r.backend}: {what}"
            if line not in seen:
                seen.add(line)
                lines.append(line)
    met = [r.met for r in results if r.met is not None]
    if met:
        lines += ["", f"Targets: {met.count(True)} met, {met.count(False)} missed"]
    return "\n".join(lines).lstrip("\n")


# --------------------------------------------------------------------------- JSON


def machine_info() -> dict[str, Any]:
    """The machine, generically: no host name, no paths."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(
    results: Sequence[Result], folder: Path, *, settings: dict[str, Any], command: list[str]
) -> Path:
    """Write ``<folder>/<UTC timestamp>.json`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    stem = now.strftime("%Y-%m-%dT%H-%M-%SZ")
    path = folder / f"{stem}.json"
    counter = 1
    while path.exists():
        counter += 1
        path = folder / f"{stem}-{counter}.json"
    rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "traceback"} for r in results]
    document = {
        "schema": 2,
        "created": now.isoformat(timespec="seconds"),
        "command": command,
        "settings": settings,
        "machine": machine_info(),
        "results": rows,
    }
    path.write_text(json.dumps(_finite(document), indent=1) + "\n", encoding="utf-8")
    return path


def load_json(path: Path) -> tuple[dict[str, Any], list[Result]]:
    """A saved run: the document and its rows."""
    document = json.loads(path.read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(Result)}
    rows = []
    for raw in document["results"]:
        row = Result(**{k: v for k, v in raw.items() if k in names})
        for name in ("median", "q1", "q3"):
            if getattr(row, name) is None:
                setattr(row, name, math.nan)
        rows.append(row)
    return document, rows


# --------------------------------------------------------------------------- plots

_BACKEND_ORDER = ("asyncio", "uvloop", "trio")
_COLORS = {"asyncio": "tab:blue", "uvloop": "tab:green", "trio": "tab:purple"}
DPI = 150


def write_plots(results: Sequence[Result], folder: Path, titles: dict[str, str]) -> list[Path]:
    """One PNG per family: one panel per case (or per series), stacked, legends outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    families: dict[str, dict[str, list[Result]]] = {}
    for r in results:
        if r.status == "ok" and not math.isnan(r.median):
            key = r.params.get("series") or r.case
            families.setdefault(r.family, {}).setdefault(key, []).append(r)
    for family, panels in families.items():
        heights = [2.2 + 0.25 * len({r.variant for r in rows}) for rows in panels.values()]
        fig, axes = plt.subplots(
            len(panels),
            1,
            figsize=(10, sum(heights) + 0.6),
            squeeze=False,
            gridspec_kw={"height_ratios": heights},
            layout="constrained",
        )
        for ax, (key, rows) in zip(axes[:, 0], panels.items(), strict=True):
            if rows[0].params.get("series"):
                _line_panel(ax, key, rows)
            else:
                _bar_panel(ax, key, rows)
        fig.suptitle(titles.get(family, family), fontsize=12)
        path = folder / f"{family}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _scale(rows: Sequence[Result]) -> tuple[float, str]:
    if rows[0].kind != "timing":
        return 1.0, rows[0].unit
    top = max(r.median for r in rows)
    for limit, factor, unit in ((1e3, 1.0, "ns"), (1e6, 1e-3, "us"), (math.inf, 1e-6, "ms")):
        if top < limit:
            return factor, f"{unit} per {rows[0].unit}"
    raise AssertionError("unreachable")


def _bar_panel(ax: Any, case: str, rows: Sequence[Result]) -> None:
    """Horizontal bars grouped by backend; the ratio is written past the error bar."""
    backends = [b for b in _BACKEND_ORDER if any(r.backend == b for r in rows)]
    variants = list(dict.fromkeys(r.variant for r in rows))
    factor, unit = _scale(rows)
    height = 0.8 / len(variants)
    right = 0.0
    for i, variant in enumerate(variants):
        ys, widths, lows, highs, texts = [], [], [], [], []
        for j, backend in enumerate(backends):
            for r in rows:
                if r.variant == variant and r.backend == backend:
                    ys.append(j - 0.4 + height * (i + 0.5))
                    widths.append(r.median * factor)
                    lows.append(max(0.0, (r.median - r.q1) * factor))
                    highs.append(max(0.0, (r.q3 - r.median) * factor))
                    first = i == 0 and not r.fixed_baseline
                    texts.append("" if r.ratio is None or first else f"{r.ratio:.2f}x")
        label = next(r.label for r in rows if r.variant == variant)
        ax.barh(ys, widths, height * 0.9, xerr=[lows, highs], capsize=2, label=label)
        for y, w, hi, text in zip(ys, widths, highs, texts, strict=True):
            ax.annotate(text, (w + hi, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7)  # fmt: skip
            right = max(right, w + hi)
    fixed = next((r for r in rows if r.fixed_baseline and r.baseline_median is not None), None)
    if fixed is not None and fixed.baseline_median is not None:
        ax.axvline(fixed.baseline_median * factor, color="black", linestyle="--",
                   linewidth=1, label=fixed.baseline, zorder=3)  # fmt: skip
    smallest = min((r.median * factor for r in rows if r.median > 0), default=0.0)
    if smallest and right / smallest > 30:  # one bar would flatten the others
        ax.set_xscale("log")
        ax.set_xlim(smallest / 2, right * 3)
        unit += " (log scale)"
    else:
        ax.set_xlim(0, right * 1.15 or 1)
    ax.set_yticks(range(len(backends)), backends)
    ax.invert_yaxis()
    ax.set_title(case, fontsize=10, loc="left")
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _line_panel(ax: Any, series: str, rows: Sequence[Result]) -> None:
    """Cost per unit against size, one line per backend and variant (baseline dotted)."""
    factor, unit = _scale(rows)
    first = rows[0].variant
    lines: dict[tuple[str, str], list[Result]] = {}
    for r in rows:
        lines.setdefault((r.backend, r.variant), []).append(r)
    for (backend, variant), points in sorted(
        lines.items(), key=lambda kv: (_BACKEND_ORDER.index(kv[0][0]), kv[0][1] != first)
    ):
        points.sort(key=lambda r: float(r.params["x"]))
        ax.plot(
            [float(r.params["x"]) for r in points],
            [r.median * factor for r in points],
            ":" if variant == first else "-",
            color=_COLORS.get(backend),
            marker="o" if variant == first else "s",
            markersize=3,
            label=f"{points[0].label} ({backend})",
        )
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(str(rows[0].params.get("xlabel", "")), fontsize=8)
    ax.set_ylabel(unit, fontsize=8)
    ax.set_title(series, fontsize=10, loc="left")
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
