"""Output: a rich table, ``<scenario>.json``, ``<scenario>.png`` and ``summary.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.harness import ContenderResult
from bench.runner import ScenarioResult, environment

COLOURS = {
    "eventbus": "#1f77b4",
    "aiokafka": "#7f7f7f",
    "confluent": "#2ca02c",
    "faststream": "#ff7f0e",
}
console = Console(width=160)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _range(r: ContenderResult, figure: str, digits: int = 0) -> str:
    values = r.figure(figure)
    if len(values) < 2:
        return ""
    return f"{min(values):,.{digits}f} - {max(values):,.{digits}f}"


def print_result(result: ScenarioResult) -> None:
    """Print the scenario's table, its ratios, and what was skipped or failed."""
    latency = result.scenario.metric == "latency"
    table = Table(
        title=escape(f"{result.scenario.title} [{result.options.broker}, {result.options.mode}]")
    )
    table.add_column("contender")
    table.add_column("N", justify="right")
    table.add_column(escape(result.scenario.unit), justify="right")
    table.add_column("min - max" if not latency else "target", justify="right")
    if latency:
        for name in ("p50 ms", "p99 ms", "max ms"):
            table.add_column(name, justify="right")
    table.add_column("CPU us/msg", justify="right")
    table.add_column("broker CPU s", justify="right")
    table.add_column("join s", justify="right")
    for _, header in result.scenario.columns:
        table.add_column(escape(header), justify="right")
    table.add_column("load", justify="right")
    ranked = sorted(
        result.ok,
        key=lambda r: (r.median("p50_ms") or 0.0) if latency else -(r.median("msgs_per_s") or 0),
    )
    for r in ranked:
        row = [escape(r.contender.label), str(r.runs[0].n), _fmt(r.median("msgs_per_s"))]
        if latency:
            row.append(_fmt(r.median("target_rate")))
            for name in ("p50_ms", "p99_ms", "max_ms"):
                spread = _range(r, name, 2)
                row.append(_fmt(r.median(name), 2) + (f" ({spread})" if spread else ""))
        else:
            row.append(_range(r, "msgs_per_s"))
        row += [
            _fmt(r.median("cpu_us_per_msg"), 1),
            _fmt(r.median("broker_cpu_s"), 2),
            _fmt(r.median("join_s"), 2),
            *(_fmt(r.median(name), 2) for name, _ in result.scenario.columns),
            _fmt(r.median("loadavg_1m"), 1),
        ]
        table.add_row(*row)
    console.print(table)
    digits = 2 if latency else 0
    for comp in result.comparisons():
        console.print(
            f"  {escape(comp['label'])}: [bold]{comp['ratio']:.2f}x[/bold] "
            f"({comp['numerator']} {comp['numerator_median']:,.{digits}f} / "
            f"{comp['denominator']} {comp['denominator_median']:,.{digits}f})"
        )
    for r in result.results:
        if r.status == "ok" and r.errors:
            console.print(
                f"  [yellow]{len(r.errors)} failed run(s)[/yellow] {r.contender.key}: "
                f"{escape('; '.join(r.errors))}"
            )
        if r.status != "ok":
            console.print(f"  [yellow]{r.status}[/yellow] {r.contender.key}: {escape(r.reason)}")


def as_json(result: ScenarioResult, env: dict[str, Any]) -> dict[str, Any]:
    """The scenario's JSON document."""
    s = result.scenario
    return {
        "scenario": s.name,
        "title": s.title,
        "description": s.description,
        "metric": s.metric,
        "mode": result.options.mode,
        "repetitions": result.repeat,
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 1),
        "broker": result.broker,
        "envelope": result.envelope,
        "setup": result.setup,
        "environment": env,
        "results": [r.as_json() for r in result.ok],
        "skipped": [r.as_json() for r in result.results if r.status == "skipped"],
        "failed": [r.as_json() for r in result.results if r.status == "failed"],
        "comparisons": result.comparisons(),
    }


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_chart(result: ScenarioResult, path: Path) -> None:
    """A horizontal bar chart: median with min-max whiskers, coloured by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = result.scenario.metric == "latency"
    rows = sorted(
        result.ok,
        key=lambda r: -(r.median("p50_ms") or 0) if latency else r.median("msgs_per_s") or 0,
    )
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.6))
    labels = [r.contender.label for r in rows]
    ys = list(range(len(rows)))
    figures = [("p50_ms", 0.0), ("p99_ms", 0.4)] if latency else [("msgs_per_s", 0.0)]
    height = 0.4 if latency else 0.7
    for name, offset in figures:
        med = [r.median(name) or 0.0 for r in rows]
        lo = [m - min(r.figure(name) or [m]) for m, r in zip(med, rows, strict=True)]
        hi = [max(r.figure(name) or [m]) - m for m, r in zip(med, rows, strict=True)]
        colours = [COLOURS[r.contender.family] for r in rows]
        ax.barh(
            [y + offset - (0.2 if latency else 0) for y in ys],
            med,
            height=height,
            xerr=[lo, hi],
            color=colours,
            alpha=1.0 if offset == 0 else 0.55,
            capsize=3,
            label=name if latency else None,
        )
        for y, m, r in zip(ys, med, rows, strict=True):
            text = f"{m:,.1f} ms" if latency else f"{m:,.0f}"
            end = max(r.figure(name) or [m])  # right of the whisker
            ax.text(end, y + offset - (0.2 if latency else 0), f"  {text}", va="center", fontsize=8)
    from matplotlib.patches import Patch

    families = sorted({r.contender.family for r in rows})
    ax.legend(
        handles=[Patch(color=COLOURS[f], label=f) for f in families],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
    )
    ax.set_yticks(ys, labels, fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel(
        "end-to-end latency, ms (log; solid p50, light p99)"
        if latency
        else f"{result.scenario.unit} (log)"
    )
    ax.set_title(
        f"{result.scenario.title}\n{result.options.broker}, {result.options.mode}, "
        f"median of {result.repeat} with min-max",
        fontsize=10,
    )
    ax.margins(x=0.25)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_outputs(results: list[ScenarioResult], out: Path) -> dict[str, Path]:
    """Write ``<scenario>.json``/``.png`` for each result and merge them into summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    written: dict[str, Path] = {}
    summary_path = out / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            summary = {}
    scenarios = summary.get("scenarios", {}) if isinstance(summary.get("scenarios"), dict) else {}
    for result in results:
        doc = as_json(result, env)
        path = out / f"{result.scenario.name}.json"
        _write(path, json.dumps(doc, indent=2) + "\n")
        written[f"{result.scenario.name}.json"] = path
        chart = out / f"{result.scenario.name}.png"
        (result.scenario.chart or write_chart)(result, chart)
        written[f"{result.scenario.name}.png"] = chart
        scenarios[result.scenario.name] = {
            "mode": doc["mode"],
            "broker": result.options.broker,
            "repetitions": doc["repetitions"],
            "started_at": doc["started_at"],
            "metric": doc["metric"],
            "results": {
                r.contender.key: {
                    "label": r.contender.label,
                    **{
                        name: value
                        for name in ("msgs_per_s", "p50_ms", "p99_ms", "cpu_us_per_msg")
                        if (value := r.as_json().get(name)) is not None
                    },
                }
                for r in result.ok
            },
            "not_measured": {r.contender.key: r.reason for r in result.results if r.status != "ok"},
            "comparisons": doc["comparisons"],
        }
    summary = {"environment": env, "scenarios": scenarios}
    _write(summary_path, json.dumps(summary, indent=2) + "\n")
    written["summary.json"] = summary_path
    return written
