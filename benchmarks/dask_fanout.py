"""Fan-out on Dask: the fan-out workload on a LocalCluster of 1, 2, ... worker processes.

``python -m benchmarks.dask_fanout [--searches 2000 --hosts 20 --latency 0.05]
[--workers 1,2,3,4] [--limited-rate 10] [--smoke] [--out DIR]``

The workload of ``benchmarks/fanout.py``: ``searches / hosts`` distinct
positions, each searched on every host of a VOFarm in its own process (50 ms
latency). Each contender is one ``voharvest.dask.harvest_on_dask`` run, one
partition per worker process (one thread each), searches only (the kept
formats match no record, so nothing is downloaded; the journals are written).

- **Scaling series**: the farm enforces no rate and the client's
  ``HostPolicy(rate=inf, concurrency=8)``: per-host limits are not the
  bottleneck. The same on 1, 2, ... workers gives the scaling ratio; more
  workers than CPUs shows where it stops.
- **Gate cost**: 2 workers without the cluster's politeness gate (each worker
  polite on its own), and the single-machine ``voharvest.harvest`` in one
  process without Dask.
- **Limited series**: the farm enforces ``--limited-rate`` per host and the
  client asks for the same, on 1, 2 and 3 workers: once the workers keep up,
  the per-host limit is the bound (``searches / hosts / rate`` seconds) and
  more workers cannot help.

The runs on one number of workers share a LocalCluster, each with a farm of its
own. Workers are started and their imports warmed before the clock starts; the
makespan runs from the call to the last partition's end (plan, target split,
tasks, combined manifest). CPU: the machine's busy CPU seconds over the run
(``/proc/stat``), the farm's share (``/proc/<pid>/stat``).

Writes ``dask_fanout.json``, ``.md`` and ``.png`` into ``--out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report
from benchmarks._harness import CpuSpan, Farm

SIZE_DEG = 0.2
NOTHING = ("x-none/x-none",)  # kept formats that match no record: searches only

SMOKE = {"searches": 40, "hosts": 4, "latency": 0.01, "workers": "1,2", "limited_rate": 10.0}
OPTIONS = {
    **_harness.workload(searches=2000, hosts=20, latency=0.05),
    "workers": ("1,2,3,4", "worker processes of the scaling series"),
    "limited_rate": (10.0, "per-host rate of the limited series"),
}
#: Scaling "stops" where one more worker adds less than this share of throughput.
STOP_GAIN = 1.10


def _warm(client: Any) -> None:
    """Import what a partition needs on every worker, before the clock starts."""

    def load() -> bool:
        import voharvest.dask._partition
        import voharvest.protocol.votable  # noqa: F401

        return True

    client.run(load)


@contextlib.contextmanager
def _cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster of ``workers`` processes (one thread each), its imports warmed; a client."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        _warm(client)
        yield client


def _dask_run(
    client: Any,
    farm: Farm,
    *,
    workers: int,
    per_host: int,
    rate: float,
    gate: bool,
    out: Path,
) -> dict[str, Any]:
    from voharvest import ClientConfig, HostPolicy
    from voharvest._config import origin_of
    from voharvest.dask import harvest_on_dask

    config = ClientConfig(host=HostPolicy(rate=rate, concurrency=8))
    with CpuSpan(farm) as span:
        run = harvest_on_dask(
            client,
            farm.sia1_urls,
            _harness.positions(per_host),
            download_to=out,
            size=SIZE_DEG,
            keep_formats=NOTHING,
            config=config,
            partitions=workers,
            sky_cell=None,
            gate=gate,
            keep_items=False,
        )
        list(run)
    searches = sum(
        t.searches + t.searches_failed for p in run.partitions for t in p.totals.values()
    )
    failed = sum(t.searches_failed for p in run.partitions for t in p.totals.values())
    # The cluster's ledger also holds the hosts of earlier runs on it (other farms).
    origins = {origin_of(url) for url in farm.sia1_urls}
    return {
        "workers": workers,
        "gate": gate,
        "searches": searches,
        "failures": failed + sum(1 for p in run.partitions if p.error is not None),
        "makespan_s": span.wall_s,
        "throughput": (searches - failed) / span.wall_s,
        "partition_seconds": sorted(round(p.seconds, 2) for p in run.partitions),
        "partition_workers": len({p.worker for p in run.partitions}),
        "reslots": sum(p.gate.reslots for p in run.partitions if p.gate is not None),
        "ledger_max_in_use": max(
            (h["max_in_use"] for o, h in run.ledger.items() if o in origins), default=None
        ),
        **span.figures(),
    }


def _single_machine(farm: Farm, per_host: int, *, rate: float, out: Path) -> dict[str, Any]:
    """The same harvest with ``voharvest.harvest`` in this process, no Dask."""
    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient

    async def main() -> tuple[int, int]:
        config = ClientConfig(host=HostPolicy(rate=rate, concurrency=8))
        ok = failed = 0
        async with VOClient(config) as client:
            run = voharvest.harvest(
                client, farm.sia1_urls, _harness.positions(per_host), size=SIZE_DEG,
                keep_formats=NOTHING, download_to=out,
            )  # fmt: skip
            async for item in run:
                ok += item.ok
                failed += not item.ok
        return ok, failed

    with CpuSpan(farm) as span:
        ok, failed = asyncio.run(main())
    return {
        "workers": 0,
        "gate": False,
        "searches": ok + failed,
        "failures": failed,
        "makespan_s": span.wall_s,
        "throughput": ok / span.wall_s,
        **span.figures(),
    }


def _contender(farm: Farm, run: Any) -> dict[str, Any]:
    with farm:
        result: dict[str, Any] = run(farm)
    result["farm"] = farm.counters()
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    per_host = _harness.per_host(args)
    total = per_host * args.hosts
    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    free = ["--hosts", str(args.hosts), "--latency", str(args.latency)]
    limited = [*free, "--rate", str(args.limited_rate)]
    # The runs on one worker count share a cluster (starting workers is most of a
    # small run's time); one cluster at a time. Each run has a farm of its own.
    runs: dict[tuple[str, int, bool], dict[str, Any]] = {}
    wanted = [*counts, *([] if 2 in counts else [2])]  # "gate cost" runs 2 workers
    plans: dict[int, list[tuple[str, float, bool]]] = {}
    for workers in wanted:
        plan = plans[workers] = [("gate cost", math.inf, False)] if workers == 2 else []
        if workers in counts:
            plan.insert(0, ("scaling", math.inf, True))
            if workers <= 3:
                plan.append(("limited", args.limited_rate, True))
    farms = {
        (series, workers, gate): Farm(*(limited if series == "limited" else free))
        for workers, plan in plans.items()
        for series, _, gate in plan
    }
    farms["gate cost", 0, False] = Farm(*free)
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(_harness.scratch("voharvest-dask-bench-"))
        if args.smoke:  # not timed: every farm starts at once, before the first cluster
            stack.enter_context(Farm.all_started(list(farms.values())))
        for workers, plan in plans.items():
            with _cluster(workers) as client:
                for series, rate, gate in plan:
                    out = root / f"{series}-{workers}-{gate}".replace(" ", "-")
                    runs[series, workers, gate] = _contender(
                        farms[series, workers, gate],
                        functools.partial(
                            _dask_run, client, workers=workers, per_host=per_host,
                            rate=rate, gate=gate, out=out,
                        ),
                    )  # fmt: skip
        runs["gate cost", 0, False] = _contender(
            farms["gate cost", 0, False],
            lambda farm: _single_machine(farm, per_host, rate=math.inf, out=root / "one"),
        )
    order = [
        *(("scaling", w, True) for w in counts),
        ("gate cost", 2, False),
        ("gate cost", 0, False),
        *(("limited", w, True) for w in counts if w <= 3),
    ]
    rows = [{"series": key[0], **runs[key]} for key in order]

    figures: dict[str, Any] = {
        "workload": {
            "searches": total,
            "hosts": args.hosts,
            "searches_per_host": per_host,
            "latency_s": args.latency,
            "limited_rate": args.limited_rate,
            "limited_bound_s": per_host / args.limited_rate,
            "cpus": os.cpu_count(),
        },
        "rows": rows,
    }
    figures["summary"] = _summary(figures)
    _write(figures, args)
    return figures


def _find(rows: Sequence[dict[str, Any]], series: str, workers: int, gate: bool = True) -> Any:
    for row in rows:
        if row["series"] == series and row["workers"] == workers and row["gate"] == gate:
            return row
    return None


def _label(row: dict[str, Any]) -> str:
    if row["workers"] == 0:
        return "voharvest.harvest, one process, no Dask"
    name = f"{row['workers']} worker{'s' if row['workers'] > 1 else ''}"
    if row["series"] == "limited":
        return f"{name}, hosts limited"
    return name + ("" if row["gate"] else ", no gate")


def _summary(figures: dict[str, Any]) -> str:
    work = figures["workload"]
    rows = figures["rows"]
    one, two = _find(rows, "scaling", 1), _find(rows, "scaling", 2)
    lim1, lim2 = _find(rows, "limited", 1), _find(rows, "limited", 2)
    nogate = _find(rows, "gate cost", 2, gate=False)
    single = _find(rows, "gate cost", 0, gate=False)
    scaling = [r for r in rows if r["series"] == "scaling"]
    best = max(scaling, key=lambda r: r["throughput"])
    lines = [
        f"Workload: {work['searches']:,} SIA v1 searches, {work['searches_per_host']} distinct "
        f"positions on each of {work['hosts']} VOFarm hosts ({work['latency_s'] * 1000:g} ms "
        "latency; the farm in its own process), searches only (no record kept), one partition "
        "per worker process (1 thread each) on a LocalCluster whose workers were started and "
        f"warmed before the clock; {work['cpus']} CPUs shared by the farm, the scheduler (in "
        "the benchmark's process) and the workers. Scaling and gate-cost rows: no rate limit "
        "anywhere, `HostPolicy(rate=inf, concurrency=8)` (the cluster's gate still grants "
        "every request a place); limited rows: the farm enforces "
        f"{work['limited_rate']:g} requests/s per host and the client asks for the same "
        f"(bound {work['limited_bound_s']:g} s).",
        "",
    ]
    if one and two:
        lines.append(
            f"**Scaling, 1 → 2 workers**: {two['throughput'] / one['throughput']:.2f} x the "
            f"throughput ({one['throughput']:.0f} → {two['throughput']:.0f} searches/s). "
            f"The best of the series was {best['workers']} workers at "
            f"{best['throughput']:.0f} searches/s."
        )
    busy = {r["workers"]: r.get("machine_busy") for r in scaling}
    stop = next(
        (
            b
            for a, b in itertools.pairwise(scaling)
            if b["throughput"] < STOP_GAIN * a["throughput"]
        ),
        None,
    )
    described = ", ".join(f"{w}: {b:.0%}" for w, b in busy.items() if b is not None)
    if stop is not None:
        lines.append(
            f"**Where it stops**: {stop['workers']} workers added less than "
            f"{STOP_GAIN - 1:.0%} over {stop['workers'] - 1} ({stop['throughput']:.0f} "
            f"searches/s). Machine busy (all {work['cpus']} CPUs) per run: {described}."
        )
    else:
        lines.append(
            f"**Where it stops**: not within {scaling[-1]['workers']} workers here. Machine "
            f"busy (all {work['cpus']} CPUs) per run: {described}."
        )
    if nogate and two:
        lines.append(
            f"**Gate cost**: 2 workers without the gate made {nogate['throughput']:.0f} "
            f"searches/s, with it {two['throughput']:.0f} "
            f"({two['throughput'] / nogate['throughput']:.2f} x)."
        )
    if single and one:
        lines.append(
            f"One process without Dask (`voharvest.harvest`): {single['throughput']:.0f} "
            f"searches/s; 1 Dask worker: {one['throughput']:.0f} "
            f"({one['throughput'] / single['throughput']:.2f} x)."
        )
    limited_rows = [r for r in rows if r["series"] == "limited"]
    if lim1 and lim2:
        bound = work["limited_bound_s"]
        each = ", ".join(
            f"{r['workers']} worker{'s' if r['workers'] > 1 else ''} {r['makespan_s']:.1f} s "
            f"({r['makespan_s'] / bound:.2f} of the bound, {r['reslots']} missed slots asked "
            "again)"
            for r in limited_rows
        )
        violations = sum(r["farm"]["rate_violations"] for r in limited_rows)
        after_stall = sum(r["farm"].get("rate_violations_after_stall", 0) for r in limited_rows)
        worst_lag = max((r["farm"].get("farm_max_loop_lag_s") or 0.0) for r in limited_rows)
        lines.append(
            f"**Limited by the hosts** (bound {bound:g} s): {each}; rate violations in all "
            f"{violations}, {after_stall} of them within a second after the farm's own event "
            "loop had stalled for at least the host's interval (the farm's worst stall: "
            f"{worst_lag * 1000:.0f} ms)."
        )
    return "\n\n".join(line for line in lines if line)


def _write(figures: dict[str, Any], args: Any) -> None:
    rows = figures["rows"]
    header = [
        "contender",
        "searches",
        "makespan (s)",
        "searches/s",
        "failures",
        "rate violations",
        "after a farm stall",
        "farm's worst loop stall (ms)",
        "machine busy",
        "farm CPU (s)",
        "partitions on workers",
        "missed slots asked again",
    ]
    table = []
    for row in rows:
        table.append(
            [
                _label(row),
                row["searches"],
                row["makespan_s"],
                row["throughput"],
                row["failures"],
                row["farm"]["rate_violations"],
                row["farm"].get("rate_violations_after_stall", ""),
                round(1000 * (row["farm"].get("farm_max_loop_lag_s") or 0.0)),
                f"{row['machine_busy']:.0%}" if "machine_busy" in row else "",
                row.get("farm_cpu_s", ""),
                row.get("partition_workers", ""),
                row.get("reslots", ""),
            ]
        )
    _report.write(
        args,
        "dask_fanout",
        "Fan-out on Dask: 1 vs 2 (and more) worker processes",
        table=(header, table),
        data=figures,
        plot=("searches/s", {_label(r): r["throughput"] for r in rows}),
    )


if __name__ == "__main__":
    main()
