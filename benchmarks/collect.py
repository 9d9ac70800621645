"""Gather benchmarks/results/*.md into benchmarks/RESULTS.md: ``python -m benchmarks.collect``."""

from __future__ import annotations

from benchmarks._harness import RESULTS

ORDER = ["fanout", "cpu", "downloads", "scale", "soak", "crash", "dask_fanout"]


def main() -> None:
    parts = sorted(
        RESULTS.glob("*.md"),
        key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem),
    )
    text = [
        "# Benchmark results",
        "",
        "The latest figures of each benchmark; see README.md for how to run them.",
        "",
    ]
    text += [part.read_text().strip() + "\n" for part in parts]
    (RESULTS.parent / "RESULTS.md").write_text("\n".join(text))
    print(f"benchmarks/RESULTS.md: {len(parts)} benchmarks")


if __name__ == "__main__":
    main()
