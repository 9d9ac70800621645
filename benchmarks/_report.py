"""Writing a benchmark's results: JSON, a Markdown table and a PNG plot, side by side.

Every benchmark calls :func:`write` once with its figures; ``python -m
benchmarks.collect`` gathers the Markdown parts into ``benchmarks/RESULTS.md``.
:func:`target` and :func:`verdict` judge a figure against its target the same
way everywhere.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import git


def machine(command: str) -> dict[str, Any]:
    """Where and when a figure was measured, and with what command."""
    commit = git("rev-parse", "--short", "HEAD").strip()
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": commit,
        "command": command,
        "loadavg": list(os.getloadavg()),
    }


def target(value: float | None, bound: float, *, at_most: bool = False) -> dict[str, Any]:
    """A figure against its target: ``met`` is None when the figure was not measured."""
    met = None if value is None else (value <= bound if at_most else value >= bound)
    return {"target": bound, "value": value, "met": met}


def verdict(entry: dict[str, Any]) -> str:
    """``met``, ``**missed**`` or ``not measured``, for a :func:`target` entry."""
    return {True: "met", False: "**missed**", None: "not measured"}[entry["met"]]


def cell(value: Any) -> str:
    """A table cell: floats to 3 significant digits (large ones as whole numbers)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bar_plot(
    path: Path, title: str, labels: Sequence[str], values: Sequence[float], unit: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.6 + 0.5 * len(labels)))
    axis.barh(list(labels), list(values), color="#4477aa")
    axis.set_xlabel(unit)
    axis.set_title(title, fontsize=10)
    axis.invert_yaxis()
    for index, value in enumerate(values):
        axis.text(value, index, f" {value:.3g}", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(
    args: Any,
    name: str,
    title: str,
    *,
    table: tuple[Sequence[str], Sequence[Sequence[Any]]],
    data: dict[str, Any],
    summary: str | None = None,
    plot: tuple[str, Mapping[str, float]] | None = None,
) -> Path:
    """Save ``<name>.json``, ``<name>.md`` (and ``<name>.png``) in ``args.out``; print the Markdown.

    ``args`` is what :func:`benchmarks._harness.parse` returned: ``args.command``
    is how the run was started (``python -m benchmarks.NAME ...``). ``table`` is
    the header and the rows; ``plot`` the unit and a value per label of a bar
    plot; ``summary`` the text under it (``data["summary"]`` if
    not given). Returns the Markdown's path.
    """
    command, directory = args.command, args.out
    summary = data["summary"] if summary is None else summary
    header, rows = table
    directory.mkdir(parents=True, exist_ok=True)
    where = machine(command)
    (directory / f"{name}.json").write_text(
        json.dumps({"benchmark": name, "machine": where, **data}, indent=2, default=str)
    )
    parts = [
        f"## {title}",
        "",
        f"Measured {where['date']} on {where['cpus']} CPUs ({where['platform']}, "
        f"Python {where['python']}, commit {where['commit'] or '?'}, load average "
        f"{where['loadavg'][0]:.2f}) with `{command}`.",
        "",
        markdown_table(header, rows),
        "",
        summary.strip(),
        "",
    ]
    if plot is not None:
        unit, values = plot
        bar_plot(directory / f"{name}.png", title, list(values), list(values.values()), unit)
        parts += [f"![{title}](results/{name}.png)", ""]
    markdown = directory / f"{name}.md"
    markdown.write_text("\n".join(parts))
    print(markdown.read_text())
    return markdown
