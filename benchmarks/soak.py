"""Fault soak: thousands of searches and downloads against a farm that fails on purpose.

``python -m benchmarks.soak [--tasks 10000] [--hosts 20] [--smoke] [--out DIR]``

A VOFarm runs in a process of its own (``python -m voharvest.testing serve``),
so that its CPU is not the client's: every host injects the same fault mix (by
default 10 % 503 and 5 % 429, both with ``Retry-After: 1``, 2 % resets
mid-body, 2 % truncated bodies, 1 % stalls, 1 % malformed VOTables, 1 %
``QUERY_STATUS=ERROR``; the last two only where a VOTable is due, so images
see 20 % faults and searches 22 %) and enforces a rate limit.

One :func:`voharvest.harvest` searches every host (even hosts SIA 1.0, odd ones
SIA 2.0) around targets spread far apart, so that each search finds
``images_per_search`` FITS tiles nobody else finds; the number of targets is
chosen so that searches + downloads come as close as they can to ``--tasks``.
Then the same harvest runs again on the same directory: the journal makes it
a resume that retries only what failed.

Measured: every item the harvest yields, by kind and by error class; anything
else that came out of it (must be none); every file under its final name,
compared byte for byte with what the farm serves (must all match); the rate
violations the farm counted (must be none); and the success rate of tasks
whose faults were transient.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report
from benchmarks._harness import Farm
from voharvest import (
    ClientConfig,
    FormatError,
    HostPolicy,
    QueryError,
    RetryPolicy,
    Timeouts,
    VOClient,
    VOHarvestError,
    harvest,
)
from voharvest._limiter import HostLimiter
from voharvest.harvesting import JOURNAL_NAME, HarvestItem, UnexpectedError
from voharvest.testing import search_tiles
from voharvest.testing._sky import Sky

FAULTS = {
    "503": 0.10,
    "429": 0.05,
    "reset": 0.02,
    "truncate": 0.02,
    "stall": 0.01,
    "malformed": 0.01,
    "query_error": 0.01,
}
#: Errors a search gets from a malformed or QUERY_STATUS=ERROR answer. They are
#: answers, not accidents of the transport: the client does not retry them, so
#: a task that ends on one failed for good in that run.
PERMANENT = (FormatError, QueryError)
#: Smoke size: 100 tasks spread over 10 hosts (10 each: 2 searches, 8 files) rather
#: than a few hosts with many tasks, so that no host's share turns into a long tail of
#: its own: a host whose adaptive rate the injected 429s pushed down would otherwise
#: trickle its last files.
SMOKE = {
    "tasks": 100,
    "hosts": 10,
    "read_timeout": 1.0,
    "stall_seconds": 3.0,
    "backoff": 0.25,
    "backoff_max": 2.0,
    "retry_after": 0.25,
}
OPTIONS = {
    **_harness.workload(hosts=20, latency=0.01, images_per_search=4, image_bytes=16 * 1024),
    **_harness.workload(concurrency=4, downloads=80, seed=0),
    "work": _harness.WORK,
    "tasks": (10_000, "searches + downloads"),
    "rate": (10.0, "per host: farm limit = client"),
    "read_timeout": (2.0, "client stall timeout"),
    "stall_seconds": (10.0, "farm stall length"),
    "backoff": (1.0, "first retry wait (s)"),
    "backoff_max": (8.0, "longest retry wait (s)"),
    "retry_after": (1.0, "seconds the farm's 429/503 ask for (Retry-After)"),
    "searches": (40, "search workers"),
}
JOURNAL_STEM = JOURNAL_NAME.removesuffix(".sqlite")


@dataclass(frozen=True)
class Settings:
    tasks: int
    hosts: int
    images_per_search: int
    image_bytes: int
    rate: float
    latency: float
    read_timeout: float
    stall_seconds: float
    concurrency: int
    backoff: float
    backoff_max: float
    retry_after: float
    searches: int
    downloads: int
    seed: int
    size: float


@dataclass
class RunFigures:
    """What one harvest run yielded."""

    wall_seconds: float = 0.0
    items: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # "search FormatError", ...
    skipped: int = 0
    escaped: list[str] = field(default_factory=list)
    not_items: int = 0
    unexpected: int = 0
    client: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # of failures other than permanent ones

    @property
    def attempted(self) -> int:
        return sum(self.items.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def permanent(self) -> int:
        return sum(n for key, n in self.failures.items() if key in _PERMANENT_KEYS)

    @property
    def succeeded(self) -> int:
        return self.attempted - self.failed

    @property
    def transient_success_rate(self) -> float:
        eligible = self.attempted - self.permanent
        return self.succeeded / eligible if eligible else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall_seconds, 2),
            "attempted": self.attempted,
            "by_kind": dict(self.items),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failures_by_class": dict(sorted(self.failures.items())),
            "failed_permanently": self.permanent,
            "transient_success_rate": self.transient_success_rate,
            "downloads_skipped_existing": self.skipped,
            "escaped_exceptions": self.escaped,
            "non_items": self.not_items,
            "unexpected_errors": self.unexpected,
            "transient_failures": self.messages,
            "client": self.client,
        }


_PERMANENT_KEYS = {f"search {cls.__name__}" for cls in PERMANENT}


# --- the plan -------------------------------------------------------------------------


def plan_targets(settings: Settings) -> list[tuple[float, float]]:
    """Targets far enough apart that no two find the same tile, enough for ``tasks``."""
    per_pair = 1 + settings.images_per_search
    count = max(1, round(settings.tasks / (settings.hosts * per_pair)))
    targets = []
    for index in range(count):
        row, column = divmod(index, 60)
        targets.append((3.0 + 6.0 * column + 0.37 * (row % 5), -60.0 + 2.0 * row))
        if -60.0 + 2.0 * row > 60.0:
            raise SystemExit(f"too many targets ({count}) for this layout")
    return targets


def expected_tiles(targets: Sequence[tuple[float, float]], settings: Settings) -> list[list[str]]:
    """The tile ids each target's search finds on every host (SIA v1 and v2 alike)."""
    found = [
        [t.id for t in search_tiles(ra, dec, settings.size / 2, settings.images_per_search)]
        for ra, dec in targets
    ]
    every = [tile for tiles in found for tile in tiles]
    if len(every) != len(set(every)):
        raise SystemExit("targets share tiles: spread them further apart")
    return found


# --- when the client really started its requests -----------------------------------------

#: Start times (loop clock) of every request the client let through, per host limiter.
STARTS: dict[HostLimiter, list[float]] = {}
#: When each request's headers went out on the wire (``time.perf_counter``), per host:port.
WIRE: dict[str, list[float]] = {}


def record_starts() -> None:
    """Note the moment each request leaves the client's limiter (the benchmark's own probe).

    The farm counts a rate violation when its token bucket is empty as it
    handles a request; a busy farm process handles late requests in a bunch.
    Running the same bucket over the client's own start times tells the two
    apart: violations the client caused, and violations of the farm's timing.
    """
    if getattr(HostLimiter, "_soak_probe", False):
        return
    original = HostLimiter._start_slot

    async def probed(self: HostLimiter, **options: Any) -> None:
        await original(self, **options)
        STARTS.setdefault(self, []).append(asyncio.get_running_loop().time())

    HostLimiter._start_slot = probed  # type: ignore[method-assign]
    HostLimiter._soak_probe = True  # type: ignore[attr-defined]


def bucket_violations(starts: Sequence[float], rate: float, burst: float) -> int:
    """How many of these start times the farm's token bucket would have refused."""
    tokens, last, refused = burst, None, 0
    for now in sorted(starts):
        if last is not None:
            tokens = min(burst, tokens + (now - last) * rate)
        last = now
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            refused += 1
    return refused


# --- the harvest ------------------------------------------------------------------------


def client_config(settings: Settings) -> ClientConfig:
    return ClientConfig(
        timeouts=Timeouts(connect=5.0, read=settings.read_timeout, total=60.0),
        retry=RetryPolicy(
            attempts=5,
            initial=settings.backoff,
            maximum=settings.backoff_max,
            jitter=settings.backoff,
            deadline=300.0,
        ),
        host=HostPolicy(rate=settings.rate, concurrency=settings.concurrency),
    )


def client_totals(client: VOClient) -> dict[str, Any]:
    stats = list(client.stats.values())
    statuses: Counter[int] = Counter()
    for one in stats:
        statuses.update(one.statuses)
    return {
        "requests": sum(s.requests for s in stats),
        "retries": sum(s.retries for s in stats),
        "failures": sum(s.failures for s in stats),
        "pauses": sum(s.pauses for s in stats),
        "paused_seconds": round(sum(s.paused_seconds for s in stats), 1),
        "max_in_flight_per_host": max((s.max_in_flight for s in stats), default=0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def run_harvest(
    settings: Settings, ready: dict[str, Any], targets: list[tuple[float, float]], out: Path
) -> RunFigures:
    figures = RunFigures()
    STARTS.clear()
    WIRE.clear()
    started = time.monotonic()
    async with (
        _harness.traced_session(WIRE) as session,
        VOClient(client_config(settings), session=session) as client,
    ):
        services: list[Any] = []
        for host in ready["hosts"]:
            if host["index"] % 2:
                services.append(client.sia_service(host["sia2_url"], version=2))
            else:
                services.append(host["sia1_url"])
        try:
            run = harvest(
                client,
                services,
                targets,
                size=settings.size,
                search_format="image/fits",
                download_to=out,
                searches=settings.searches,
                downloads=settings.downloads,
            )
            async for item in run:
                if not isinstance(item, HarvestItem):
                    figures.not_items += 1
                    continue
                figures.items[item.kind] += 1
                if item.found_on_disk or item.nothing_to_cut:
                    figures.skipped += 1
                if item.error is None:
                    continue
                key = f"{item.kind} {type(item.error).__name__}"
                figures.failures[key] += 1
                if key not in _PERMANENT_KEYS and len(figures.messages) < 50:
                    figures.messages.append(f"{key}: {item.error}")
                if isinstance(item.error, UnexpectedError) or not isinstance(
                    item.error, VOHarvestError
                ):
                    figures.unexpected += 1
        except Exception as exc:  # anything at all that got out of the harvest
            figures.escaped.append(f"{type(exc).__name__}: {exc}")
        figures.client = client_totals(client)
    figures.client["bucket_violations_of_client_starts"] = sum(
        bucket_violations(times, settings.rate, 2.0) for times in STARTS.values()
    )
    figures.client["bucket_violations_of_headers_sent"] = sum(
        bucket_violations(times, settings.rate, 2.0) for times in WIRE.values()
    )
    figures.wall_seconds = time.monotonic() - started
    return figures


# --- checking the files -----------------------------------------------------------------


def check_files(out: Path, settings: Settings, expected: dict[str, Any]) -> dict[str, Any]:
    """Every file under a final name against the farm's bytes; the journal's completion."""
    images = _harness.FarmImages(Sky(settings.seed), settings.image_bytes)
    journal = sqlite3.connect(f"file:{out / JOURNAL_NAME}?mode=ro", uri=True)
    try:
        records = {
            path: (url, state)
            for url, path, state in journal.execute("SELECT url, path, state FROM records")
        }
        searches = Counter(state for (state,) in journal.execute("SELECT state FROM searches"))
    finally:
        journal.close()

    verified = mismatched = unknown = kept_parts = 0
    bad: list[str] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        if "/" not in relative and relative.startswith(JOURNAL_STEM):
            continue  # the journal, its -wal and -shm, and anything else named after it
        if path.name.endswith((".part", ".part.json")):
            kept_parts += path.name.endswith(".part")
            continue
        if relative not in records:
            unknown += 1
            bad.append(f"not in the journal: {relative}")
            continue
        if path.read_bytes() == images.served(records[relative][0]):
            verified += 1
        else:
            mismatched += 1
            bad.append(f"differs from the farm's bytes: {relative}")
    done = [path for path, (_, state) in records.items() if state == "done"]
    lost = [path for path in done if not (out / path).is_file()]
    return {
        "final_files_verified": verified,
        "corrupt_or_partial_final_files": mismatched,
        "unknown_final_files": unknown,
        "done_but_missing": len(lost),
        "kept_part_files": kept_parts,
        "searches_done": searches.get("done", 0),
        "searches_expected": expected["searches"],
        "files_done": len(done),
        "files_expected": expected["downloads"],
        "problems": bad[:20] + [f"done but missing: {p}" for p in lost[:20]],
    }


# --- the whole benchmark ----------------------------------------------------------------


async def soak(settings: Settings, ready: dict[str, Any], out: Path) -> dict[str, Any]:
    """The first harvest and its resume against the farm whose ready line is ``ready``."""
    targets = plan_targets(settings)
    tiles = expected_tiles(targets, settings)
    per_host_downloads = sum(len(found) for found in tiles)
    expected = {
        "targets": len(targets),
        "searches": settings.hosts * len(targets),
        "downloads": settings.hosts * per_host_downloads,
    }
    expected["tasks"] = expected["searches"] + expected["downloads"]
    print(
        f"soak: {settings.hosts} hosts x {len(targets)} targets: {expected['searches']} searches"
        f" + {expected['downloads']} downloads = {expected['tasks']} tasks",
        file=sys.stderr,
    )
    record_starts()
    first = await run_harvest(settings, ready, targets, out)
    after_first = await asyncio.to_thread(check_files, out, settings, expected)
    print(f"soak: first run {first.to_dict()}", file=sys.stderr)
    second = await run_harvest(settings, ready, targets, out)
    after_second = await asyncio.to_thread(check_files, out, settings, expected)
    print(f"soak: resume {second.to_dict()}", file=sys.stderr)
    return {
        "expected": expected,
        "first_run": first.to_dict(),
        "first_run_files": after_first,
        "resume": second.to_dict(),
        "resume_files": after_second,
    }


def farm_figures(farm: dict[str, Any]) -> dict[str, Any]:
    """What the farm counted over both runs, from its "stopped" line."""
    if "totals" not in farm:
        raise RuntimeError("the farm stopped without its counters")
    totals = farm["totals"]
    return {
        "requests": totals["requests"],
        "searches": totals["searches"],
        "image_fetches": totals["image_fetches"],
        "faults": totals["faults"],
        "rate_violations": totals["rate_violations"],
        "rate_violations_per_host": {
            index: host["rate_violations"] for index, host in farm["hosts"].items()
        },
        "max_in_flight_per_host": totals["max_in_flight"],
        "statuses": totals["statuses"],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    if args.stall_seconds <= args.read_timeout:
        raise SystemExit("--stall-seconds must be longer than --read-timeout")
    settings = _harness.settings(Settings, args, size=0.4)
    faults = ",".join(f"{name}={p}" for name, p in FAULTS.items())
    farm_options = [
        "--hosts", str(settings.hosts), "--seed", str(settings.seed),
        "--latency", str(settings.latency), "--rate", str(settings.rate),
        "--faults", faults, "--stall-seconds", str(settings.stall_seconds),
        "--retry-after-seconds", str(settings.retry_after),
        "--image-bytes", str(settings.image_bytes),
        "--images-per-search", str(settings.images_per_search),
    ]  # fmt: skip
    with (
        _harness.workdir(args.work, "voharvest-soak-") as work,
        Farm(*farm_options, duration=7200) as farm,
    ):
        figures = asyncio.run(soak(settings, farm.ready, work))
    figures["farm"] = farm_figures(farm.stopped)
    figures["settings"] = settings.__dict__
    figures["must_be_zero"] = must_be_zero(figures)
    report(figures, args)
    return figures


def must_be_zero(figures: dict[str, Any]) -> dict[str, int]:
    runs = (figures["first_run"], figures["resume"])
    files = (figures["first_run_files"], figures["resume_files"])
    return {
        "escaped_exceptions": sum(len(r["escaped_exceptions"]) + r["non_items"] for r in runs),
        "unexpected_errors": sum(r["unexpected_errors"] for r in runs),
        "corrupt_or_partial_final_files": sum(
            f["corrupt_or_partial_final_files"] + f["unknown_final_files"] for f in files
        ),
        "done_but_missing": sum(f["done_but_missing"] for f in files),
        "rate_violations": figures["farm"]["rate_violations"],
    }


def _classes(failures: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in failures.items()) or "none"


def report(figures: dict[str, Any], args: Any) -> Path:
    s = figures["settings"]
    first, second = figures["first_run"], figures["resume"]
    f1, f2 = figures["first_run_files"], figures["resume_files"]
    farm = figures["farm"]
    expected = figures["expected"]
    zero = figures["must_be_zero"]
    rows = [
        ["tasks attempted (searches + downloads)", first["attempted"], second["attempted"], ""],
        ["succeeded", first["succeeded"], second["succeeded"], ""],
        ["failed with a typed error", first["failed"], second["failed"], ""],
        ["  by class", _classes(first["failures_by_class"]),
         _classes(second["failures_by_class"]), ""],
        ["  of which permanent (malformed / QUERY_STATUS=ERROR search)",
         first["failed_permanently"], second["failed_permanently"], ""],
        ["success rate, tasks with transient faults only",
         f"{100 * first['transient_success_rate']:.3f} %",
         f"{100 * second['transient_success_rate']:.3f} %", ">= 99.9 %"],
        ["exceptions that escaped", len(first["escaped_exceptions"]) + first["non_items"],
         len(second["escaped_exceptions"]) + second["non_items"], "0"],
        ["unexpected (UnexpectedError) items", first["unexpected_errors"],
         second["unexpected_errors"], "0"],
        ["final files verified byte for byte", f1["final_files_verified"],
         f2["final_files_verified"], ""],
        ["corrupt, partial or unknown files under final names",
         f1["corrupt_or_partial_final_files"] + f1["unknown_final_files"],
         f2["corrupt_or_partial_final_files"] + f2["unknown_final_files"], "0"],
        ["journal says done, file missing", f1["done_but_missing"], f2["done_but_missing"], "0"],
        ["completion: searches done", f"{f1['searches_done']} / {expected['searches']}",
         f"{f2['searches_done']} / {expected['searches']}", ""],
        ["completion: files done", f"{f1['files_done']} / {expected['downloads']}",
         f"{f2['files_done']} / {expected['downloads']}", ""],
        ["wall time (s)", first["wall_seconds"], second["wall_seconds"], ""],
        ["client requests / retries / Retry-After pauses",
         f"{first['client']['requests']} / {first['client']['retries']} / "
         f"{first['client']['pauses']}",
         f"{second['client']['requests']} / {second['client']['retries']} / "
         f"{second['client']['pauses']}", ""],
        ["rate violations seen by the farm (both runs)", farm["rate_violations"], "", "0"],
        ["  the same token bucket over the client's own request starts / headers sent",
         f"{first['client']['bucket_violations_of_client_starts']} / "
         f"{first['client']['bucket_violations_of_headers_sent']}",
         f"{second['client']['bucket_violations_of_client_starts']} / "
         f"{second['client']['bucket_violations_of_headers_sent']}", ""],
    ]  # fmt: skip
    faults = ", ".join(f"{k} {v}" for k, v in sorted(farm["faults"].items()))
    summary = f"""
{"**Smoke size.** " if args.smoke else ""}{s["hosts"]} VOFarm hosts in a subprocess, each with
the fault mix 503 10 %, 429 5 % (both `Retry-After: 1`), reset 2 %, truncate 2 %,
stall 1 % ({s["stall_seconds"]:g} s), malformed 1 %, QUERY_STATUS=ERROR 1 %, and a limit of
{s["rate"]:g} requests/s per host (burst 2). {expected["targets"]} targets x {s["hosts"]}
hosts (even hosts SIA 1.0, odd SIA 2.0), {s["images_per_search"]} FITS tiles of
{s["image_bytes"]} bytes per search: {expected["searches"]} searches + {expected["downloads"]}
downloads = {expected["tasks"]} tasks. Client: `HostPolicy(rate={s["rate"]:g},
concurrency={s["concurrency"]})`, `Timeouts(connect=5, read={s["read_timeout"]:g}, total=60)`,
`RetryPolicy(attempts=5, initial={s["backoff"]:g}, maximum={s["backoff_max"]:g},
jitter={s["backoff"]:g})`; {s["searches"]} search and
{s["downloads"]} download workers. The second column is the same harvest run again
on the same directory (a resume).
Faults the farm injected over both runs: {faults}; it answered {farm["requests"]} requests.

A task counts as permanently failed when a search ends on `FormatError` or
`QueryError` (the farm answered a malformed VOTable or `QUERY_STATUS=ERROR`). The
success rate is over every other task, which met only transient faults (503, 429,
resets, truncations, stalls). Every file under a final name was compared with the
bytes the farm serves.

The farm counts a rate violation when its token bucket (rate {s["rate"]:g}/s, burst 2)
is empty as it handles a request. The benchmark also runs the same bucket over two
client-side clocks: the moment
each request left the client's limiter, and the moment its headers went out
(an aiohttp trace hook on a session built like the client's own, lent to it).
"""
    return _report.write(
        args,
        "soak",
        "Fault soak: searches and downloads on a failing farm",
        summary=summary,
        table=(["figure", "first run", "resume", "must be"], rows),
        data={**figures, "zero_check": zero},
    )


if __name__ == "__main__":
    result = main()
    failed = {key: value for key, value in result["must_be_zero"].items() if value}
    print(json.dumps({"must_be_zero": result["must_be_zero"]}), file=sys.stderr)
    sys.exit(1 if failed else 0)
