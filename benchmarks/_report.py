"""What the user sees: the progress bar, the table, the JSON file and the plots."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ._framework import Result

__all__ = [
    "Progress",
    "format_markdown",
    "format_table",
    "format_value",
    "machine_info",
    "write_json",
    "write_plots",
]

PEERS = (
    "anyio",
    "trio",
    "uvloop",
    "outcome",
    "httpx",
    "tenacity",
    "stamina",
    "backoff",
    "aiolimiter",
    "aiometer",
    "purgatory",
    "matplotlib",
)


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr; silent when disabled or not a terminal."""

    def __init__(self, total: int, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.done:
            eta = f" eta {elapsed / self.done * (self.total - self.done):4.0f}s"
        bar_width = 24
        filled = round(bar_width * self.done / self.total)
        head = (
            f"[{'#' * filled}{'.' * (bar_width - filled)}] {self.done}/{self.total}"
            f" {elapsed:4.0f}s{eta} "
        )
        line = (head + label)[: max(width - 1, 10)]
        self.stream.write("\r" + line.ljust(max(width - 1, 10)))
        self.stream.flush()

    def step(self, label: str = "") -> None:
        self.done += 1
        self.show(label)

    def close(self) -> None:
        if self.enabled:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * max(width - 1, 10) + "\r")
            self.stream.flush()


# --------------------------------------------------------------------------- table


def format_value(value: float | None, result: Result) -> str:
    """A time per operation in ns/us/ms, or a metric with its unit."""
    if value is None or math.isnan(value):
        return "-"
    if result.kind == "timing":
        if abs(value) < 1_000:
            return f"{value:.0f} ns"
        if abs(value) < 1_000_000:
            return f"{value / 1_000:.2f} us"
        return f"{value / 1_000_000:.2f} ms"
    if result.unit.startswith("B/") or result.unit == "B":
        if abs(value) >= 10 * 1024 * 1024:
            return f"{value / 1024 / 1024:.1f} MiB{result.unit[1:]}"
        if abs(value) >= 10 * 1024:
            return f"{value / 1024:.1f} KiB{result.unit[1:]}"
        return f"{value:.0f} {result.unit}"
    if float(value).is_integer():
        return f"{value:.0f} {result.unit}"
    return f"{value:.1f} {result.unit}"


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.3g}"


def _spread(result: Result) -> str:
    if result.median and not math.isnan(result.median) and len(result.values) > 1:
        return f"+-{(result.q3 - result.q1) / 2 / abs(result.median) * 100:.1f}%"
    return "-"


def _ratio(result: Result) -> str:
    if result.ratio is None:
        return "-"
    return f"{result.ratio:.2f}x"


def _target(result: Result) -> str:
    if result.target is None:
        return ""
    verdict = {True: "ok", False: "MISSED", None: ""}[result.met]
    return f"{result.target} {verdict}".strip()


def format_table(results: Sequence[Result], titles: dict[str, str] | None = None) -> str:
    """The closing table: one row per measured variant, skips and errors listed after it."""
    titles = titles or {}
    unit_of = {(r.family, r.case): r.unit for r in results}
    header = ("case", "variant", "backend", "median", "spread", "baseline", "ratio", "target")
    lines: list[str] = []
    rows_by_family: dict[str, list[tuple[str, ...]]] = {}
    for r in results:
        if r.status != "ok":
            continue
        case = r.case if r.kind != "timing" else f"{r.case} (per {unit_of[(r.family, r.case)]})"
        if r.baseline is None:
            baseline = "-"
        elif r.fixed_baseline:
            baseline = r.baseline
        elif r.baseline == r.label and r.ratio == 1.0:
            baseline = "(baseline)"
        else:
            baseline = format_value(r.baseline_median, r)
        rows_by_family.setdefault(r.family, []).append(
            (
                case,
                r.label,
                r.backend,
                format_value(r.median, r),
                _spread(r),
                baseline,
                _ratio(r),
                _target(r),
            )
        )
    all_rows = [row for rows in rows_by_family.values() for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in all_rows]) for i, h in enumerate(header)]

    def fmt(row: tuple[str, ...]) -> str:
        cells = []
        for i, cell in enumerate(row):
            cells.append(cell.rjust(widths[i]) if i in (3, 4, 6) else cell.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    for family, rows in rows_by_family.items():
        title = titles.get(family, family)
        lines.append("")
        lines.append(f"== {family}: {title}")
        lines.append(fmt(header))
        lines.append(fmt(tuple("-" * w for w in widths)))
        previous = None
        for row in rows:
            if previous is not None and row[0] != previous:
                lines.append("")
            lines.append(fmt(row if row[0] != previous else ("", *row[1:])))
            previous = row[0]
    detailed = [r for r in results if r.status == "ok" and r.extra]
    if detailed:
        lines.append("")
        lines.append("Details:")
        for r in detailed:
            extras = ", ".join(f"{k}={_number(v)}" for k, v in r.extra.items())
            lines.append(f"  {r.family}/{r.case}: {r.label} on {r.backend}: {extras}")
    skipped = [r for r in results if r.status == "skipped"]
    errors = [r for r in results if r.status == "error"]
    if skipped:
        lines.append("")
        lines.append("Skipped:")
        # One line per case and reason: which variants, on which loops.
        groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for r in skipped:
            labels, backends = groups.setdefault((f"{r.family}/{r.case}", r.reason), ([], []))
            if r.label not in labels:
                labels.append(r.label)
            if r.backend not in backends:
                backends.append(r.backend)
        for (case_id, reason), (labels, backends) in groups.items():
            lines.append(
                f"  {case_id}: {', '.join(labels)} on {', '.join(backends)}: skipped: {reason}"
            )
    if errors:
        lines.append("")
        lines.append("Errors:")
        lines.extend(f"  {r.family}/{r.case}: {r.label} on {r.backend}: {r.reason}" for r in errors)
    missed = [r for r in results if r.met is False]
    met = [r for r in results if r.met is True]
    if met or missed:
        lines.append("")
        lines.append(f"Targets: {len(met)} met, {len(missed)} missed")
    return "\n".join(lines).lstrip("\n")


def format_markdown(results: Sequence[Result], titles: dict[str, str] | None = None) -> str:
    """The same rows as :func:`format_table`, as one Markdown table per family."""
    titles = titles or {}
    out: list[str] = []
    family = None
    previous = None
    for r in results:
        if r.status != "ok":
            continue
        if r.family != family:
            family = r.family
            previous = None
            out += ["", f"### {family}: {titles.get(family, family)}", ""]
            out.append("| case | variant | backend | median | spread | baseline | ratio | target |")
            out.append("|---|---|---|---:|---:|---|---:|---|")
        case = r.case if r.kind != "timing" else f"{r.case} (per {r.unit})"
        if r.baseline is None:
            baseline = "-"
        elif r.fixed_baseline:
            baseline = r.baseline
        elif r.baseline == r.label and r.ratio == 1.0:
            baseline = "(baseline)"
        else:
            baseline = format_value(r.baseline_median, r)
        cells = [
            case if case != previous else "",
            r.label,
            r.backend,
            format_value(r.median, r),
            _spread(r).replace("+-", "±"),
            baseline,
            _ratio(r),
            _target(r),
        ]
        previous = case
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out).strip() + "\n"


# --------------------------------------------------------------------------- JSON


def machine_info() -> dict[str, Any]:
    """The machine, generically: no host name, no paths."""
    versions: dict[str, str | None] = {}
    for name in ("anyway", *PEERS):
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


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(
    results: Sequence[Result], folder: Path, *, settings: dict[str, Any], argv: Sequence[str]
) -> Path:
    """Write ``<folder>/<UTC timestamp>.json`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    path = folder / f"{now.strftime('%Y-%m-%dT%H-%M-%SZ')}.json"
    counter = 1
    while path.exists():
        counter += 1
        path = folder / f"{now.strftime('%Y-%m-%dT%H-%M-%SZ')}-{counter}.json"
    document = {
        "schema": 1,
        "created": now.isoformat(timespec="seconds"),
        "command": ["python", "-m", "anyway", "bench", *argv],
        "settings": settings,
        "machine": machine_info(),
        "results": [dataclasses.asdict(r) for r in results],
    }
    path.write_text(json.dumps(_clean(document), indent=1) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- plots

_BACKEND_ORDER = {"asyncio": 0, "uvloop": 1, "trio": 2}


def write_plots(
    results: Sequence[Result], folder: Path, titles: dict[str, str] | None = None
) -> list[Path]:
    """One PNG per family (matplotlib, Agg backend). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    families: dict[str, list[Result]] = {}
    for r in results:
        if r.status == "ok":
            families.setdefault(r.family, []).append(r)
    for family, rows in families.items():
        panels: dict[str, list[Result]] = {}
        for r in rows:
            series = r.params.get("series")
            key = f"series:{series}" if series else f"case:{r.case}"
            panels.setdefault(key, []).append(r)
        count = len(panels)
        cols = min(3, count)
        nrows = math.ceil(count / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.9 * nrows), squeeze=False)
        for ax in axes.flat[count:]:
            ax.set_visible(False)
        for ax, (key, panel) in zip(axes.flat, panels.items(), strict=False):
            if key.startswith("series:"):
                _line_panel(ax, key.removeprefix("series:"), panel)
            else:
                _bar_panel(ax, key.removeprefix("case:"), panel)
        fig.suptitle(f"{family}: {titles.get(family, family)}", fontsize=12)
        fig.tight_layout()
        path = folder / f"{family}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _scale(rows: Sequence[Result]) -> tuple[float, str]:
    if rows[0].kind != "timing":
        return 1.0, rows[0].unit
    top = max(r.median for r in rows)
    if top >= 1_000_000:
        return 1e-6, f"ms per {rows[0].unit}"
    if top >= 1_000:
        return 1e-3, f"us per {rows[0].unit}"
    return 1.0, f"ns per {rows[0].unit}"


def _bar_panel(ax: Any, case: str, rows: Sequence[Result]) -> None:
    backends = sorted({r.backend for r in rows}, key=lambda b: _BACKEND_ORDER.get(b, 9))
    variants: list[str] = []
    for r in rows:
        if r.variant not in variants:
            variants.append(r.variant)
    factor, ylabel = _scale(rows)
    fixed = next((r for r in rows if r.fixed_baseline and r.baseline_median is not None), None)
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        xs, heights, lows, highs, ratios = [], [], [], [], []
        for j, backend in enumerate(backends):
            match = [r for r in rows if r.variant == variant and r.backend == backend]
            if not match:
                continue
            r = match[0]
            xs.append(j - 0.4 + width * (i + 0.5))
            heights.append(r.median * factor)
            lows.append(max(0.0, (r.median - r.q1) * factor))
            highs.append(max(0.0, (r.q3 - r.median) * factor))
            ratios.append(r.ratio)
        bars = ax.bar(xs, heights, width * 0.95, yerr=[lows, highs], capsize=2, label=variant)
        for bar, ratio in zip(bars, ratios, strict=True):
            if ratio is not None and (i > 0 or fixed is not None):
                ax.annotate(
                    f"{ratio:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90 if len(variants) > 3 else 0,
                )
    if fixed is not None and fixed.baseline_median is not None:
        ax.axhline(
            fixed.baseline_median * factor,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=fixed.baseline,
        )
    values = [r.median for r in rows if r.median > 0]
    if values and max(values) / min(values) > 50:
        ax.set_yscale("log")
    ax.set_xticks(range(len(backends)), backends)
    ax.set_title(case, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(y=0.15)
    ax.legend(fontsize=7, loc="best")


def _line_panel(ax: Any, series: str, rows: Sequence[Result]) -> None:
    lines: dict[tuple[str, str], list[Result]] = {}
    for r in rows:
        lines.setdefault((r.backend, r.variant), []).append(r)
    factor, ylabel = _scale(rows)
    colors = {"asyncio": "tab:blue", "uvloop": "tab:green", "trio": "tab:purple"}
    first_variant = rows[0].variant
    for (backend, variant), points in sorted(
        lines.items(), key=lambda kv: (_BACKEND_ORDER.get(kv[0][0], 9), kv[0][1])
    ):
        points.sort(key=lambda r: float(r.params["x"]))
        ax.plot(
            [float(r.params["x"]) for r in points],
            [r.median * factor for r in points],
            ":" if variant == first_variant else "-",
            color=colors.get(backend),
            marker="o",
            markersize=3,
            label=f"{points[0].label} ({backend})",
        )
    ax.set_xscale("log")
    ax.set_xlabel(str(rows[0].params.get("xlabel", "x")), fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(series, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="best")
