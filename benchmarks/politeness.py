"""Politeness: spacing at the wire, fair scheduling across hosts, limits nobody told us.

``python -m benchmarks.politeness [--only noburst,fair,unknown] [--seconds 120]
[--contenders told,untold,pyvo,pyvo8,stilts] [--no-stilts] [--smoke] [--out DIR]``

Every farm runs in a process of its own (``python -m voharvest.testing serve``)
and is started afresh for each run, so its counters belong to that run alone.
The runs go one after another; ``--smoke`` runs them all at once (its figures
are not timed), each still with a farm of its own.

1. **No-burst hosts** (``noburst``): 20 hosts that refuse (429, Retry-After: 1)
   any request closer than 1/10 s minus 15 ms to the previous one; 100
   searches per host through ``harvest()`` told ``HostPolicy(rate=10)``; again
   with 10 % of searches answered 503 + Retry-After: 1; and a fresh process
   starting 12 searches per host at once (``asyncio.gather``). Counted: the
   hosts' rate violations; makespan against the bound (per host: its requests
   ``1/rate`` apart, plus the pauses its 503s imposed; the largest).
2. **A slow host** (``fair``): one host with 2 s latency beside three with
   20 ms, 100 searches each through ``harvest()`` at the default worker counts
   (32 searches), told ``HostPolicy(rate=10)``. Each fast host's finish time
   against its own bound (99 / 10 s + its latency).
3. **Limits nobody told us** (``unknown``): four hosts with token buckets:
   1 request/s (bucket 2, 429 with Retry-After as an HTTP date), 3/s (bucket 1,
   503 without Retry-After), 3/s (bucket 2, 429 + Retry-After: 1), 20/s (bucket
   2, 429 + Retry-After: 1). Searches per host: ``--seconds`` x its limit.
   Contenders, each on a fresh farm: voharvest told each limit; voharvest not
   told (default configuration, the 20/s host with ``HostPolicy(max_rate=50)``);
   pyvo one search after another; pyvo in 8 threads; STILTS ``coneskymatch
   servicetype=sia erract=retry`` (one process per host, where installed).
   Figures per host, from the farm's own log: refusals in the host's first 30 s
   and per minute after, throughput after 30 s against its limit, and the share
   of searches answered. A contender still running at ``--limit`` is stopped.

Writes ``politeness.json`` and ``politeness.md`` into ``--out`` (default
``benchmarks/results``) and prints the Markdown. Timing figures from a shared
2-CPU machine are noisy; the JSON keeps the farm's stall counts.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report

SIZE = 0.2
#: The unknown-limit hosts: (limit/s, bucket, refusal status, Retry-After form).
UNKNOWN = ((1.0, 2.0, 429, "date"), (3.0, 1.0, 503, "none"), (3.0, 2.0, 429, "seconds"))
FAST_LIMIT = (20.0, 2.0, 429, "seconds")
RAISED_CEILING = 50.0


# --- a farm in a process of its own -------------------------------------------------------


class Farm:
    """``python -m voharvest.testing serve`` for one ``with`` block; ``stopped``: its counters."""

    def __init__(self, hosts: int, per_host: dict[int, dict[str, Any]], *options: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "voharvest.testing",
            "serve",
            "--hosts",
            str(hosts),
            "--per-host",
            json.dumps({str(k): v for k, v in per_host.items()}),
            "--duration",
            "3600",
            *options,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.urls: list[str] = []
        self.stopped: dict[str, Any] = {}

    def __enter__(self) -> Farm:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline() or b"{}")
        if ready.get("event") != "ready":
            self.process.kill()
            raise RuntimeError(f"the farm did not start: {self.command}")
        self.urls = [host["sia1_url"] for host in ready["hosts"]]
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()  # the farm stops when its stdin closes
        out = self.process.stdout.read()
        self.process.stdout.close()
        self.process.wait(60)
        for line in out.splitlines():
            event = json.loads(line)
            if event.get("event") == "stopped":
                self.stopped = event

    def host(self, index: int) -> dict[str, Any]:
        return dict(self.stopped["hosts"][str(index)])


def positions(count: int, offset: int = 0) -> list[tuple[float, float]]:
    """Distinct positions spread over the sky."""
    return [
        ((37.0 * (i + offset)) % 360.0, -60.0 + (i + offset) * 0.37 % 120.0) for i in range(count)
    ]


Run = Callable[[], Any]


def in_turn(runs: Sequence[Run]) -> list[Any]:
    """The runs one after another (a measurement: nothing else on the machine)."""
    return [run() for run in runs]


def side_by_side(runs: Sequence[Run]) -> list[Any]:
    """The runs at once, each in a thread with its farm (``--smoke``: its figures are
    not timed, and each run still has a farm of its own); their results in order."""
    with ThreadPoolExecutor(max(1, len(runs))) as pool:
        return list(pool.map(lambda run: run(), runs))


def host_of(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0].split(":")[0]


# --- voharvest ------------------------------------------------------------------------


async def _harvest(config: Any, jobs: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """One harvest() per host's list, side by side on one client; when each item finished."""
    from voharvest import VOClient, harvest

    finished: dict[str, list[float]] = {url: [] for url in jobs}
    failed = 0

    async def one(client: Any, url: str, targets: list[tuple[float, float]]) -> None:
        nonlocal failed
        async for item in harvest(client, [url], targets, size=SIZE):
            finished[url].append(time.monotonic() - started)
            failed += int(not item.ok)

    async with VOClient(config) as client:
        started = time.monotonic()
        await asyncio.gather(*(one(client, url, targets) for url, targets in jobs.items()))
        elapsed = time.monotonic() - started
        rates = {origin: stats.rate for origin, stats in client.stats.items()}
    return {"elapsed": elapsed, "failed": failed, "finished": finished, "rates": rates}


async def _harvest_together(config: Any, urls: list[str], targets: Any) -> dict[str, Any]:
    """One harvest() over every host; when each host's last search finished."""
    from voharvest import VOClient, harvest

    last: dict[str, float] = {}
    failed = 0
    async with VOClient(config) as client:
        started = time.monotonic()
        async for item in harvest(client, urls, targets, size=SIZE):
            last[item.service] = time.monotonic() - started
            failed += int(not item.ok)
        elapsed = time.monotonic() - started
    return {"elapsed": elapsed, "failed": failed, "last": last}


def _told(rate: float) -> Any:
    from voharvest import ClientConfig, HostPolicy

    return ClientConfig(host=HostPolicy(rate=rate, concurrency=8))


# --- 1. no-burst hosts ------------------------------------------------------------------


def noburst(args: argparse.Namespace, each: Callable[[Sequence[Run]], list[Any]] = in_turn) -> Any:
    hosts, per_host, rate = args.noburst_hosts, args.noburst_searches, 10.0
    options = ["--rate", str(rate), "--no-burst", "--latency", "0.02"]

    def harvested(label: str, faults: str) -> dict[str, Any]:
        extra = ["--faults", faults] if faults else []
        with Farm(hosts, {}, *options, *extra) as farm:
            result = asyncio.run(_harvest_together(_told(rate), farm.urls, positions(per_host)))
        return _noburst_figures(label, farm, hosts, rate, result)

    def burst() -> dict[str, Any]:
        with Farm(hosts, {}, *options) as farm:
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.politeness",
                    "--child-burst",
                    json.dumps(farm.urls),
                    "--child-searches",
                    str(args.burst_searches),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(child.stdout)
        label = f"fresh process, {args.burst_searches * hosts} searches started at once"
        return _noburst_figures(label, farm, hosts, rate, result)

    return each(
        [
            lambda: harvested("no-burst hosts", ""),
            lambda: harvested("no-burst hosts, 10 % 503 + Retry-After", "503=0.1"),
            burst,
        ]
    )


def _noburst_figures(
    label: str, farm: Farm, hosts: int, rate: float, result: dict[str, Any]
) -> dict[str, Any]:
    counters = [farm.host(i) for i in range(hosts)]
    bounds = []
    for c in counters:
        paused = c["faults"].get("503", 0)  # each paused its host for Retry-After: 1 s
        bounds.append(max(0, c["requests"] - 1 - paused) / rate + paused * 1.0 + 0.02)
    bound = max(bounds)
    return {
        "run": label,
        "searches": sum(c["searches"] for c in counters),
        "failed": result["failed"],
        "violations": sum(c["rate_violations"] for c in counters),
        "violations_after_farm_stall": sum(c["rate_violations_after_stall"] for c in counters),
        "makespan_s": result["elapsed"],
        "bound_s": bound,
        "makespan_over_bound": result["elapsed"] / bound,
        "farm_loop": farm.stopped.get("loop"),
    }


async def _burst_child(urls: list[str], per_host: int) -> dict[str, Any]:
    """In a fresh process: every search started at once (asyncio.gather)."""
    from voharvest import VOClient

    async with VOClient(_told(10.0)) as client:
        started = time.monotonic()
        searches = [
            client.sia_service(url).search(pos, SIZE) for pos in positions(per_host) for url in urls
        ]
        outcomes = await asyncio.gather(*searches, return_exceptions=True)
        elapsed = time.monotonic() - started
    failed = sum(isinstance(o, BaseException) for o in outcomes)
    return {"elapsed": elapsed, "failed": failed}


# --- 2. a slow host beside fast ones -----------------------------------------------------


def fair(args: argparse.Namespace) -> dict[str, Any]:
    per_host, rate = args.fair_searches, 10.0
    with Farm(4, {0: {"latency": 2.0}}, "--latency", "0.02") as farm:
        result = asyncio.run(_harvest_together(_told(rate), farm.urls, positions(per_host)))
        labels = [url.split("//", 1)[1].split("/", 1)[0] for url in farm.urls]
    bound = (per_host - 1) / rate + 0.02
    fast = {labels[i]: result["last"][labels[i]] / bound for i in (1, 2, 3)}
    return {
        "searches_per_host": per_host,
        "fast_bound_s": bound,
        "fast_finish_over_bound": fast,
        "slow_finish_s": result["last"][labels[0]],
        "failed": result["failed"],
    }


# --- 3. limits nobody told us -------------------------------------------------------------


def _unknown_hosts() -> dict[int, dict[str, Any]]:
    return {
        i: {"rate_limit": limit, "burst": burst, "refusal": status, "retry_after": form}
        for i, (limit, burst, status, form) in enumerate((*UNKNOWN, FAST_LIMIT))
    }


def _limits() -> list[float]:
    return [limit for limit, *_ in (*UNKNOWN, FAST_LIMIT)]


def _workload(seconds: float) -> list[int]:
    return [max(2, math.ceil(seconds * limit)) for limit in _limits()]


def _contender_voharvest(told: bool, urls: list[str], counts: list[int], limit: float) -> Any:
    from voharvest import ClientConfig, HostPolicy

    limits = _limits()
    if told:
        hosts = tuple(
            (host_of(u), HostPolicy(rate=r, concurrency=8))
            for u, r in zip(urls, limits, strict=True)
        )
    else:
        hosts = ((host_of(urls[-1]), HostPolicy(max_rate=RAISED_CEILING)),)
    config = ClientConfig(hosts=hosts)
    jobs = {
        url: positions(n, 1000 * i) for i, (url, n) in enumerate(zip(urls, counts, strict=True))
    }

    async def bounded() -> dict[str, Any]:
        try:
            return await asyncio.wait_for(_harvest(config, jobs), limit)
        except TimeoutError:
            return {"stopped_at_limit": True}

    return asyncio.run(bounded())


def _searches(urls: list[str], counts: list[int]) -> list[tuple[str, tuple[float, float]]]:
    """Every host's searches, interleaved (round robin) as one list."""
    lists = [
        [(url, p) for p in positions(n, 1000 * i)]
        for i, (url, n) in enumerate(zip(urls, counts, strict=True))
    ]
    return [job for row in itertools.zip_longest(*lists) for job in row if job is not None]


def _contender_pyvo(threads: int, urls: list[str], counts: list[int], limit: float) -> Any:
    import pyvo

    services = {url: pyvo.dal.SIAService(url) for url in urls}
    deadline = time.monotonic() + limit
    lock = threading.Lock()
    outcome = {"ok": 0, "failed": 0}

    def one(job: tuple[str, tuple[float, float]]) -> None:
        if time.monotonic() > deadline:
            return
        url, pos = job
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                services[url].search(pos=pos, size=SIZE)
            key = "ok"
        except Exception:
            key = "failed"
        with lock:
            outcome[key] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, _searches(urls, counts)))
    return outcome


def _contender_stilts(urls: list[str], counts: list[int], limit: float) -> Any:
    with tempfile.TemporaryDirectory() as work:
        processes = []
        for i, (url, n) in enumerate(zip(urls, counts, strict=True)):
            table = Path(work) / f"in{i}.csv"
            with table.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["ra", "dec"])
                writer.writerows(positions(n, 1000 * i))
            processes.append(
                subprocess.Popen(
                    [
                        "stilts",
                        "coneskymatch",
                        "servicetype=sia",
                        f"serviceurl={url}",
                        f"in={table}",
                        "ifmt=csv",
                        "ra=ra",
                        "dec=dec",
                        f"sr={SIZE / 2}",
                        "erract=retry",
                        "omode=discard",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + limit
        stopped = False
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                stopped = True
    return {"stopped_at_limit": stopped}


def _per_host_figures(counters: dict[str, Any], searches: int, limit: float) -> dict[str, Any]:
    refusals = counters["refusal_times"]
    answered = counters["search_times"]
    end = max([*refusals, *answered, 0.0])
    after = [t for t in answered if t >= 30.0]
    late_refusals = [t for t in refusals if t >= 30.0]
    span_after = end - 30.0
    return {
        "searches": searches,
        "answered": len(answered),
        "succeeded_pct": 100.0 * min(len(answered), searches) / searches,
        "refusals_first_30s": sum(1 for t in refusals if t < 30.0),
        "refusals_per_min_after": 60.0 * len(late_refusals) / span_after
        if span_after >= 10
        else None,
        "throughput_after_30s_over_limit": (
            len(after) / span_after / limit if span_after >= 10 and after else None
        ),
        "last_answer_s": end,
    }


def unknown(
    args: argparse.Namespace, each: Callable[[Sequence[Run]], list[Any]] = in_turn
) -> list[dict[str, Any]]:
    counts = _workload(args.seconds)
    limits = _limits()
    limit = args.limit if args.limit else 2.5 * args.seconds + 30
    contenders: list[tuple[str, str, Any]] = [
        (
            "told",
            "voharvest, told each limit",
            lambda u: _contender_voharvest(True, u, counts, limit),
        ),
        (
            "untold",
            "voharvest, not told (defaults; 20/s host: max_rate=50)",
            lambda u: _contender_voharvest(False, u, counts, limit),
        ),
        ("pyvo", "pyvo, one search after another", lambda u: _contender_pyvo(1, u, counts, limit)),
        ("pyvo8", "pyvo, 8 threads", lambda u: _contender_pyvo(8, u, counts, limit)),
    ]
    if not args.no_stilts and shutil.which("stilts"):
        contenders.append(
            (
                "stilts",
                "STILTS coneskymatch erract=retry",
                lambda u: _contender_stilts(u, counts, limit),
            )
        )
    wanted = {name.strip() for name in args.contenders.split(",") if name.strip()}
    contenders = [c for c in contenders if c[0] in wanted]

    def row(name: str, run: Callable[[list[str]], Any]) -> dict[str, Any]:
        with Farm(len(limits), _unknown_hosts(), "--latency", "0.02") as farm:
            started = time.monotonic()
            client = run(farm.urls)
            elapsed = time.monotonic() - started
        hosts = [
            {"limit": lim, **_per_host_figures(farm.host(i), counts[i], lim)}
            for i, lim in enumerate(limits)
        ]
        if isinstance(client, dict) and "rates" in client:
            for h, url in zip(hosts, farm.urls, strict=True):
                origin = "http://" + url.split("//", 1)[1].split("/", 1)[0]
                h["ended_at_rate"] = client["rates"].get(origin)
            client = {k: v for k, v in client.items() if k not in ("finished", "rates")}
        return {"contender": name, "elapsed_s": elapsed, "client": client, "hosts": hosts}

    return each([functools.partial(row, name, run) for _, name, run in contenders])


# --- the report ---------------------------------------------------------------------------


def _fmt(value: Any, digits: str = ".3g") -> str:
    if value is None:
        return "-"
    return format(value, digits) if isinstance(value, float) else str(value)


def _write(figures: dict[str, Any], args: argparse.Namespace) -> Path:
    rows: list[list[Any]] = []
    for run in figures.get("noburst", []):
        rows.append(
            [
                "voharvest told rate 10",
                run["run"],
                f"{run['searches']} searches, {run['failed']} failed",
                f"{run['violations']} violations "
                f"({run['violations_after_farm_stall']} after a farm stall)",
                f"makespan {run['makespan_s']:.2f} s = {run['makespan_over_bound']:.3f} "
                f"x bound {run['bound_s']:.2f} s",
            ]
        )
    if "fair" in figures:
        f = figures["fair"]
        ratios = ", ".join(f"{v:.3f}" for v in f["fast_finish_over_bound"].values())
        rows.append(
            [
                "voharvest told rate 10, harvest() defaults",
                "one 2 s host beside three 20 ms hosts",
                f"{f['searches_per_host']} per host, {f['failed']} failed",
                f"slow host done at {f['slow_finish_s']:.1f} s",
                f"fast hosts' finish / own bound ({f['fast_bound_s']:.2f} s): {ratios}",
            ]
        )
    for row in figures.get("unknown", []):
        for h in row["hosts"]:
            rows.append(
                [
                    row["contender"],
                    f"host limited at {h['limit']:g}/s",
                    f"{h['succeeded_pct']:.1f} % of {h['searches']} answered",
                    f"refusals: {h['refusals_first_30s']} in 30 s, "
                    f"{_fmt(h['refusals_per_min_after'])}/min after",
                    f"throughput after 30 s / limit: {_fmt(h['throughput_after_30s_over_limit'])}"
                    + (
                        f"; rate ended at {h['ended_at_rate']:.3g}/s"
                        if h.get("ended_at_rate")
                        else ""
                    ),
                ]
            )
    summary = (
        "Each run on a fresh VOFarm in its own process, on the same 2 CPUs as the "
        "client (the load average is in the line above). Refusals are the "
        "farm's own count of requests it refused for its rate (429, or 503 for the host "
        "that answers 503 without Retry-After), timed from each host's first request."
    )
    return _report.write(
        args,
        "politeness",
        "Politeness: no-burst hosts, a slow host, limits nobody told us",
        table=(["contender", "run", "searches", "host limits", "pace"], rows),
        data=figures,
        summary=summary,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.politeness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--only", default="noburst,fair,unknown", help="runs, comma-separated")
    parser.add_argument(
        "--seconds",
        type=float,
        default=120.0,
        help="unknown limits: seconds of work per host (120)",
    )
    parser.add_argument(
        "--limit",
        type=float,
        default=0.0,
        help="stop a contender after this many s (2.5 x --seconds + 30)",
    )
    parser.add_argument("--noburst-hosts", type=int, default=20)
    parser.add_argument("--noburst-searches", type=int, default=100, help="per host (100)")
    parser.add_argument(
        "--burst-searches", type=int, default=12, help="per host, started at once (12)"
    )
    parser.add_argument("--fair-searches", type=int, default=100, help="per host (100)")
    parser.add_argument("--no-stilts", action="store_true")
    parser.add_argument(
        "--contenders",
        default="told,untold,pyvo,pyvo8,stilts",
        help="unknown limits: which of told,untold,pyvo,pyvo8,stilts run (all)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, every run at once, for the tests"
    )
    parser.add_argument("--out", type=Path, default=_harness.RESULTS, metavar="DIR")
    parser.add_argument("--child-burst", help=argparse.SUPPRESS)
    parser.add_argument("--child-searches", type=int, default=12, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.command = _harness.command_line(parser, words)
    if args.child_burst:
        result = asyncio.run(_burst_child(json.loads(args.child_burst), args.child_searches))
        print(json.dumps(result))
        return result
    if args.smoke:
        args.seconds, args.noburst_hosts, args.noburst_searches = 1.0, 3, 8
        args.burst_searches, args.fair_searches, args.limit = 3, 6, 40.0
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    # A measurement runs one farm at a time; the smoke runs every farm at once
    # (what its threads import, imported first: not by two threads at once).
    each = side_by_side if args.smoke else in_turn
    if args.smoke:
        import pyvo  # noqa: F401

        import voharvest  # noqa: F401
    parts = {
        "noburst": lambda: noburst(args, each),
        "fair": lambda: fair(args),
        "unknown": lambda: unknown(args, each),
    }
    chosen = [name for name in parts if name in wanted]
    figures: dict[str, Any] = {"smoke": args.smoke}
    figures.update(zip(chosen, each([parts[name] for name in chosen]), strict=True))
    markdown = _write(figures, args)
    print(markdown.read_text())
    return figures


if __name__ == "__main__":
    main()
