"""Benchmark 1, fan-out: many SIA v1 searches over many rate-limited hosts.

``python -m benchmarks.fanout [--searches 2000 --hosts 20 --latency 0.05 --rate 10]
[--pyvo-sequential 200] [--threads 32] [--smoke] [--out DIR]``

A VOFarm runs in a process of its own (``python -m voharvest.testing serve``)
with every host enforcing ``--rate`` requests/s (429 with Retry-After past
it). The workload is ``searches / hosts`` distinct positions, each searched on
every host: ``searches`` SIA v1 searches, the same per host. The farm is
started afresh for each contender, so its counters (rate violations, 429s)
and token buckets belong to that contender alone.

- **voharvest**: one ``VOClient`` with the polite default
  ``HostPolicy(rate=--rate, concurrency=8)`` running every search as one harvest
  without downloads (``voharvest.harvest(client, sia_urls, positions, size=...)``).
  Its makespan is compared with the lower bound ``searches_per_host / rate``.
- **control**: the same requests through voharvest's transport (limiter,
  retries) by as many workers, not parsed: what the pacing alone achieves.
- **pyvo, sequential**: ``pyvo.dal.SIAService(url).search(pos=..., size=...)``
  one after another, over the first ``--pyvo-sequential`` searches (hosts
  interleaved); its makespan for the whole workload is scaled linearly.
- **pyvo, threads**: the same calls in a ``ThreadPoolExecutor(--threads)``
  over every search. pyvo does not retry, so a 429 is a failed search.

For every contender: makespan, failures, the farm's rate violations and 429s,
and the client's CPU (this process's CPU time over the run) in all and per
search; for voharvest also the event-loop lag (a 5 ms ticker) and when each
host's last search ended.

Writes ``fanout.json``, ``fanout.md`` and ``fanout.png`` (throughput) into
``--out`` (default ``benchmarks/results``) and prints the Markdown table.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report
from benchmarks._harness import CpuSpan, Farm, LoopLag

#: Targets of issue 13: makespan over the bound; client CPU per search, half of the
#: 5.56 s for 2,000 searches measured before it.
TARGET_RATIO = 1.05
TARGET_CPU_MS_PER_SEARCH = 1.39
SIZE_DEG = 0.2

#: ``--smoke``: tiny, and lenient enough (a bucket of 3 at 5/s) that a busy machine's
#: stalls don't decide it; the full run keeps the issue's bucket of 2.
SMOKE = {
    "searches": 20,
    "hosts": 4,
    "latency": 0.01,
    "rate": 5.0,
    "burst": 3.0,
    "pyvo_sequential": 5,
    "threads": 8,
}
OPTIONS = {
    **_harness.workload(searches=2000, hosts=20, latency=0.05, concurrency=8, workers=32),
    "rate": (10.0, "requests/s per host"),
    "burst": (2.0, "the hosts' token bucket size, the farm's"),
    "pyvo_sequential": (200, "searches pyvo runs one by one, time scaled to all; 0: all"),
    "threads": (32, "pyvo thread pool size"),
    "diagnose": (False, "trace voharvest's request starts per host"),
}


# --- the workload ------------------------------------------------------------------------


def workload(urls: Sequence[str], per_host: int) -> list[tuple[str, float, float]]:
    """(url, ra, dec) for every search, hosts interleaved: the order a harvest queues them."""
    return [(url, ra, dec) for ra, dec in _harness.positions(per_host) for url in urls]


# --- voharvest -------------------------------------------------------------------------------


def _tightest(times: Sequence[float], k: int) -> float:
    """The shortest time span holding ``k`` consecutive request starts."""
    ordered = sorted(times)
    return min(ordered[i + k - 1] - ordered[i] for i in range(len(ordered) - k + 1))


def _outcome(ok: int, errors: collections.Counter[str], span: CpuSpan) -> dict[str, Any]:
    """What every contender reports: searches, failures by kind, makespan and client CPU."""
    return {
        "searches": ok + sum(errors.values()),
        "ok": ok,
        "failures": sum(errors.values()),
        "errors": dict(errors),
        "makespan_s": span.wall_s,
        "client_cpu_s": span.own_s,
    }


def _client_stats(client: Any) -> dict[str, Any]:
    stats = list(client.stats.values())
    return {
        "requests": sum(s.requests for s in stats),
        "retries": sum(s.retries for s in stats),
        "http_429": sum(s.statuses.get(429, 0) for s in stats),
        "throttled": sum(s.throttled for s in stats),
        "pauses": sum(s.pauses for s in stats),
        "max_in_flight_one_host": max((s.max_in_flight for s in stats), default=0),
    }


async def _transport_only(
    urls: Sequence[str], per_host: int, *, rate: float, concurrency: int, workers: int
) -> dict[str, Any]:
    """Control: the same requests through voharvest's transport (limiter, retries), unparsed."""
    from voharvest import ClientConfig, HostPolicy, VOClient, VOHarvestError
    from voharvest.protocol import sia1

    config = ClientConfig(host=HostPolicy(rate=rate, concurrency=concurrency))
    queue = collections.deque(
        sia1.build_url(url, pos=(ra, dec), size=SIZE_DEG)
        for url, ra, dec in workload(urls, per_host)
    )
    errors: collections.Counter[str] = collections.Counter()
    ok = 0

    async def worker(client: VOClient) -> None:
        nonlocal ok
        while queue:
            try:
                await client.transport.request("GET", queue.popleft())
                ok += 1
            except VOHarvestError as exc:
                errors[type(exc).__name__] += 1

    async with VOClient(config) as client:
        with CpuSpan() as span:
            await asyncio.gather(*(worker(client) for _ in range(workers)))
        stats = _client_stats(client)
    return {**_outcome(ok, errors, span), "workers": workers, **stats}


async def _voharvest(
    urls: Sequence[str],
    per_host: int,
    *,
    rate: float,
    concurrency: int,
    workers: int,
    diagnose: bool = False,
) -> dict[str, Any]:
    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient

    config = ClientConfig(host=HostPolicy(rate=rate, concurrency=concurrency))
    targets = _harness.positions(per_host)
    ok = 0
    errors: collections.Counter[str] = collections.Counter()
    last_done: dict[str, float] = {}
    starts: dict[str, list[float]] = {}
    session = _harness.traced_session(starts) if diagnose else None
    try:
        async with VOClient(config, session=session) as client:
            async with LoopLag() as lag:
                with CpuSpan() as span:
                    job = voharvest.harvest(
                        client, list(urls), targets, size=SIZE_DEG, searches=workers
                    )
                    async for item in job:
                        last_done[item.service] = time.perf_counter() - span.started
                        if item.ok:
                            ok += 1
                        else:
                            errors[type(item.error).__name__] += 1
            stats = _client_stats(client)
    finally:
        if session is not None:
            await session.close()
    finishes = sorted(last_done.values())
    diagnosis: dict[str, Any] = {}
    if diagnose:
        for k in (3, 2):
            diagnosis[f"tightest_{k}_starts_ms"] = sorted(
                round(1000 * _tightest(times, k), 2) for times in starts.values() if len(times) >= k
            )[:5]
    return {
        **_outcome(ok, errors, span),
        "harvest_workers": workers,
        **stats,
        "loop_lag_ms": lag.summary(),
        **({"diagnosis": diagnosis} if diagnose else {}),
        "host_finish_s": {
            "first": finishes[0] if finishes else None,
            "median": finishes[len(finishes) // 2] if finishes else None,
            "last": finishes[-1] if finishes else None,
        },
    }


# --- pyvo --------------------------------------------------------------------------------------


def _pyvo_search(services: dict[str, Any], search: tuple[str, float, float]) -> str | None:
    """One pyvo search; None if it worked, else what went wrong ("429", "DALServiceError", ...)."""
    url, ra, dec = search
    try:
        results = services[url].search(pos=(ra, dec), size=SIZE_DEG)
        len(results)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code is None and exc.__cause__ is not None:
            response = getattr(exc.__cause__, "response", None)
            code = getattr(response, "status_code", None)
        return str(code) if code else type(exc).__name__
    return None


@contextlib.contextmanager
def _pyvo_services(urls: Sequence[str]) -> Any:
    """One pyvo SIAService per host (each with its requests session), closed afterwards."""
    import pyvo

    services = {url: pyvo.dal.SIAService(url) for url in urls}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's VOTable warnings, urllib3's pool ones
            yield services
    finally:
        for service in services.values():
            session = getattr(service, "_session", None)
            if session is not None:
                session.close()


def _pyvo(
    urls: Sequence[str], searches: Sequence[tuple[str, float, float]], threads: int = 0
) -> dict[str, Any]:
    """pyvo over ``searches``: one after another, or in a pool of ``threads``."""
    with _pyvo_services(urls) as services, ThreadPoolExecutor(max(1, threads)) as pool:
        with CpuSpan() as span:
            if threads:
                outcomes = list(pool.map(lambda s: _pyvo_search(services, s), searches))
            else:
                outcomes = [_pyvo_search(services, s) for s in searches]
    errors = collections.Counter(o for o in outcomes if o is not None)
    result = _outcome(len(outcomes) - sum(errors.values()), errors, span)
    result |= {"http_429": errors.get("429", 0), "elapsed_s": span.wall_s}
    return result | ({"threads": threads} if threads else {})


# --- the run ---------------------------------------------------------------------------------


def _contender(farm: Farm, run: Any, bound: float) -> dict[str, Any]:
    """``run(farm)`` against a fresh farm; its figures, the farm's counters and CPU."""
    with farm, CpuSpan(farm) as span:
        result: dict[str, Any] = run(farm)
    result["farm"] = farm.counters()
    result |= span.figures(client_cpu_s=result["client_cpu_s"])
    result["makespan_over_bound"] = result["makespan_s"] / bound
    result["client_cpu_ms_per_search"] = 1000 * result["client_cpu_s"] / max(1, result["searches"])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    per_host = _harness.per_host(args)
    total = per_host * args.hosts
    bound = per_host / args.rate
    sequential_n = total if args.pyvo_sequential <= 0 else min(args.pyvo_sequential, total)
    farm_options = ["--hosts", str(args.hosts), "--latency", str(args.latency)]
    farm_options += ["--rate", str(args.rate), "--burst", str(args.burst)]
    policy = {"rate": args.rate, "concurrency": args.concurrency, "workers": args.workers}

    farms = [Farm(*farm_options) for _ in range(4)]  # a fresh farm per contender

    def run(contender: Any) -> dict[str, Any]:
        return _contender(farms.pop(0), contender, bound)

    with contextlib.ExitStack() as stack:
        if args.smoke:  # not timed: the four farms start at once
            stack.enter_context(Farm.all_started(list(farms)))
        # (a) voharvest, and the control: its transport alone, the same requests unparsed
        ours = run(
            lambda farm: asyncio.run(
                _voharvest(farm.sia1_urls, per_host, **policy, diagnose=args.diagnose)
            )
        )
        control = run(lambda farm: asyncio.run(_transport_only(farm.sia1_urls, per_host, **policy)))
        # (b) pyvo, one search after another, on a subset; (c) pyvo in a pool, every search
        sequential = run(
            lambda farm: _pyvo(farm.sia1_urls, workload(farm.sia1_urls, per_host)[:sequential_n])
        )
        threaded = run(
            lambda farm: _pyvo(farm.sia1_urls, workload(farm.sia1_urls, per_host), args.threads)
        )
    sequential["scaled_from"] = sequential_n
    sequential["makespan_s"] = sequential["elapsed_s"] * total / sequential_n
    sequential["makespan_over_bound"] = sequential["makespan_s"] / bound
    for result in (ours, control):
        result["throughput"] = result["ok"] / result["makespan_s"]
    for result in (sequential, threaded):
        result["throughput"] = result["ok"] / result["elapsed_s"]

    figures: dict[str, Any] = {
        "workload": {
            "searches": total,
            "hosts": args.hosts,
            "searches_per_host": per_host,
            "distinct_positions": per_host,
            "size_deg": SIZE_DEG,
            "latency_s": args.latency,
            "rate_per_host": args.rate,
            "burst": args.burst,
            "bound_s": bound,
            "bound_throughput": total / bound,
            "voharvest_policy": {"rate": args.rate, "concurrency": args.concurrency},
            "note": "the farm and the client share this machine's CPUs; "
            "the farm is restarted for each contender",
        },
        "targets": {
            "voharvest_makespan_over_bound": _report.target(
                ours["makespan_over_bound"], TARGET_RATIO, at_most=True
            ),
            "voharvest_rate_violations": _report.target(
                ours["farm"]["rate_violations"], 0, at_most=True
            ),
            "voharvest_failures": _report.target(ours["failures"], 0, at_most=True),
            "voharvest_client_cpu_ms_per_search": _report.target(
                ours["client_cpu_ms_per_search"], TARGET_CPU_MS_PER_SEARCH, at_most=True
            ),
        },
        "voharvest": ours,
        "voharvest_transport_only": control,
        "pyvo_sequential": sequential,
        "pyvo_threads": threaded,
    }
    _write(figures, args)
    return figures


def _summary(figures: dict[str, Any]) -> str:
    ours, control = figures["voharvest"], figures["voharvest_transport_only"]
    seq, thr = figures["pyvo_sequential"], figures["pyvo_threads"]
    work = figures["workload"]
    policy = work["voharvest_policy"]
    targets = figures["targets"]
    lag = ours.get("loop_lag_ms", {})
    finish = ours["host_finish_s"]
    nan = float("nan")
    lines = [
        f"Workload: {work['searches']:,} SIA v1 searches, {work['searches_per_host']} distinct "
        f"positions on each of {work['hosts']} hosts, {work['latency_s'] * 1000:g} ms latency, "
        f"each host enforcing {work['rate_per_host']:g} requests/s (token bucket of "
        f"{work['burst']:g}; 429 with "
        f"Retry-After: 1 past it). Lower bound: {work['searches_per_host']} / "
        f"{work['rate_per_host']:g} = {work['bound_s']:.3g} s. The farm runs in its own process "
        f"on the same CPUs and is restarted for each contender. voharvest: "
        f"`HostPolicy(rate={policy['rate']:g}, concurrency={policy['concurrency']})`, one harvest "
        f"without downloads, {ours['harvest_workers']} search workers. The control sends the "
        "same requests through voharvest's transport and limiter without parsing them. pyvo "
        f"sequential ran the first {seq['scaled_from']:,} searches (hosts interleaved); its "
        "makespan is scaled linearly to the whole workload. pyvo does not retry: a 429 is a "
        "failed search.",
        "",
        f"**Targets, voharvest**: makespan / bound ≤ {TARGET_RATIO}: "
        f"{ours['makespan_over_bound']:.3f} "
        f"({_report.verdict(targets['voharvest_makespan_over_bound'])}); rate violations 0: "
        f"{ours['farm']['rate_violations']} "
        f"({_report.verdict(targets['voharvest_rate_violations'])}); failures 0: "
        f"{ours['failures']} ({_report.verdict(targets['voharvest_failures'])}); client CPU per "
        f"search ≤ {TARGET_CPU_MS_PER_SEARCH:g} ms: {ours['client_cpu_ms_per_search']:.2f} ms "
        f"({_report.verdict(targets['voharvest_client_cpu_ms_per_search'])}).",
        "",
        f"**voharvest, measured in the same run**: hosts finished at {finish['first'] or nan:.2f}"
        f" s (first), {finish['median'] or nan:.2f} s (median), {finish['last'] or nan:.2f} s "
        f"(last); {ours['http_429']} answers were 429s. CPU: client {ours['client_cpu_s']:.1f} s "
        f"({ours['client_cpu_s'] / ours['makespan_s']:.0%} of one core), farm "
        f"{ours.get('farm_cpu_s', nan):.1f} s, other processes on the machine "
        f"{ours.get('other_processes_cpu_s', nan):.1f} s. Event-loop lag (a 5 ms ticker) p50 / "
        f"p99 / max {LoopLag.text(lag)} ms. The control: {control['makespan_over_bound']:.3f} of "
        f"the bound, {control['client_cpu_ms_per_search']:.2f} client CPU ms per request, "
        f"{control['farm']['rate_violations']} violations.",
    ]
    diagnosis = ours.get("diagnosis")
    if diagnosis:
        lines.append(
            "Traced request starts (`--diagnose`): the tightest 3 consecutive starts on one "
            f"host spanned {diagnosis['tightest_3_starts_ms'][:3]} ms, the tightest 2 "
            f"{diagnosis['tightest_2_starts_ms'][:3]} ms."
        )
    lines += [
        "",
        f"**pyvo**: voharvest made {ours['throughput'] / seq['throughput']:.1f} times the "
        "successful searches/s of pyvo sequential, and "
        f"{ours['ok'] / max(thr['ok'], 1):.2f} times the successful searches of pyvo with "
        f"{thr['threads']} threads, which took {thr['makespan_s']:.1f} s and lost "
        f"{thr['failures']:,} of {thr['searches']:,} searches ({thr['http_429']:,} of them to "
        f"429s; the farm counted {thr['farm']['rate_violations']:,} rate violations). pyvo "
        f"sequential: {seq['farm']['rate_violations']} violations.",
    ]
    return "\n".join(lines)


def _write(figures: dict[str, Any], args: Any) -> Path:
    figures["summary"] = _summary(figures)
    ours = figures["voharvest"]
    control = figures["voharvest_transport_only"]
    seq = figures["pyvo_sequential"]
    thr = figures["pyvo_threads"]
    work = figures["workload"]
    header = [
        "contender",
        "searches run",
        "makespan (s)",
        "makespan / bound",
        "throughput (ok searches/s)",
        "failures",
        "rate violations",
        "429s seen",
        "retries",
        "client CPU (s)",
        "client CPU ms per search",
    ]
    contenders = [
        (
            f"voharvest (rate {work['voharvest_policy']['rate']:g}, "
            f"concurrency {work['voharvest_policy']['concurrency']})",
            ours,
        ),
        ("control: voharvest transport only (same requests, not parsed)", control),
        (f"pyvo sequential ({seq['scaled_from']:,} run, time scaled to {work['searches']:,})", seq),
        (f"pyvo, ThreadPoolExecutor({thr['threads']})", thr),
    ]
    rows: list[list[Any]] = [
        [
            label,
            f"{one['searches']:,}",
            one["makespan_s"],
            one["makespan_over_bound"],
            one["throughput"],
            one["failures"],
            one["farm"]["rate_violations"],
            one["http_429"],
            one.get("retries", "none (pyvo)"),
            one["client_cpu_s"],
            one["client_cpu_ms_per_search"],
        ]
        for label, one in contenders
    ]
    rows.append(
        [
            f"bound: {work['searches_per_host']} per host at {work['rate_per_host']:g}/s",
            f"{work['searches']:,}",
            work["bound_s"],
            1.0,
            work["bound_throughput"],
            *[""] * 6,
        ]
    )
    bars = {
        "voharvest": ours["throughput"],
        "voharvest transport only (control)": control["throughput"],
        f"pyvo sequential ({seq['scaled_from']})": seq["throughput"],
        f"pyvo {thr['threads']} threads": thr["throughput"],
        "rate-limit bound": work["bound_throughput"],
    }
    title = f"Fan-out: {work['searches']:,} SIA searches over {work['hosts']} rate-limited hosts"
    plot = ("successful searches/s", bars)
    return _report.write(args, "fanout", title, table=(header, rows), data=figures, plot=plot)


if __name__ == "__main__":
    main()
