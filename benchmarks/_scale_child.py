"""The Python-API side of ``python -m benchmarks.scale``: one harvest in its own process.

``python -m benchmarks._scale_child MODE --service URL --targets FILE --count N [--out DIR]``,
MODE one of ``engine`` (a harvest with downloads into ``--out``), ``searches``
(without downloads) and ``trace`` (with tracemalloc: what grows between a tenth
and nine tenths of the searches, then ``write_manifest``'s peak). Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.scale import SIZE


def main(argv: Sequence[str] | None = None) -> int:
    """A harvest through the Python API; one JSON line of counts."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._scale_child")
    parser.add_argument("mode", choices=("engine", "searches", "trace"))
    parser.add_argument("--service", required=True)
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import asyncio
    import gc
    import tracemalloc

    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient

    tracing = args.mode == "trace"
    if tracing:
        tracemalloc.start(1)
    config = ClientConfig(host=HostPolicy(rate=math.inf, concurrency=8))
    counts = {"searches": 0, "downloads": 0, "failed": 0}
    snapshots: list[tracemalloc.Snapshot] = []
    marks = {max(1, args.count // 10), max(2, args.count * 9 // 10)}

    def snapshot() -> None:
        gc.collect()  # garbage in cycles is not growth
        snapshots.append(tracemalloc.take_snapshot())

    async def run() -> None:
        async with VOClient(config) as client:
            harvest = voharvest.harvest(
                client,
                [args.service],
                args.targets,
                size=SIZE,
                search_format="image/fits",
                download_to=None if args.mode == "searches" else args.out,
            )
            async for item in harvest:
                counts["searches" if item.kind == "search" else "downloads"] += 1
                counts["failed"] += int(not item.ok)
                if tracing and item.kind == "search" and counts["searches"] in marks:
                    snapshot()

    started = time.perf_counter()
    asyncio.run(run())
    result: dict[str, Any] = {"wall": time.perf_counter() - started, **counts}
    if tracing:
        first, last = sorted(marks)
        result["growth_between"] = [first, last]
        result["growth"] = _top_growth(snapshots[0], snapshots[-1], first, last)
        result["traced_growth_bytes"] = _traced(snapshots[-1]) - _traced(snapshots[0])
        result["traced_at_end_bytes"] = tracemalloc.get_traced_memory()[0]
        if args.out is not None:
            from voharvest.harvesting.manifest import write_manifest

            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            write_manifest(args.out)
            result["manifest_peak_bytes"] = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    print(json.dumps(result), flush=True)
    return 0 if counts["failed"] == 0 else 1


def _top_growth(before: Any, after: Any, first: int, last: int) -> list[dict[str, Any]]:
    """The lines whose live allocations grew most between two snapshots."""
    import tracemalloc

    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    top = []
    for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:12]:
        frame = stat.traceback[0]
        top.append(
            {
                "where": f"{_short(frame.filename)}:{frame.lineno}",
                "size_diff_bytes": stat.size_diff,
                "count_diff": stat.count_diff,
                "bytes_per_target": stat.size_diff / max(1, last - first),
            }
        )
    return top


def _traced(snapshot: Any) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


if __name__ == "__main__":
    sys.exit(main())
