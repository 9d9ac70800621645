"""What every benchmark shares: its command line, the farm process, CPU clocks, scratch space.

- :func:`arguments` (:func:`parser` and :func:`parse`): a benchmark's options from a
  table (``--smoke`` and ``--out DIR`` always; :data:`WORKLOAD` options named once,
  ``--scratch``/``--work DIR``), and the command its report shows, always
  ``python -m benchmarks.NAME ...`` with paths shown as ``DIR``; :func:`settings`
  builds a benchmark's settings from them.
- :class:`Farm`: ``python -m voharvest.testing serve ...`` in a process of its own
  for one ``with`` block: its URLs when it is ready, its counters when it stopped.
- :class:`CpuSpan`: wall time and the CPU this process, the farm and the whole
  machine used over a block.
- :class:`LoopLag`: a ticker on the running event loop, recording how late it wakes;
  :func:`traced_session`: an aiohttp session noting when each request's headers left.
- :func:`scratch` and :func:`workdir`: directories deleted however the block ends.
- :func:`positions`, :func:`tile_ids` and :class:`FarmImages`: the workloads' targets
  and the bytes the farm serves for them.

Child processes measured for their peak RSS and CPU are in :mod:`benchmarks._process`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# --- the command line ------------------------------------------------------------------------


#: Options several benchmarks take, each with a default of its own: see :func:`workload`.
WORKLOAD = {
    "searches": "searches in all",
    "hosts": "farm hosts",
    "latency": "seconds per answer",
    "concurrency": "voharvest requests in flight per host",
    "workers": "voharvest harvest search workers",
    "seed": "the farm's sky and fault seed",
    "images_per_search": "FITS tiles each search finds",
    "image_bytes": "bytes of a FITS file",
    "downloads": "download workers",
}
#: ``--scratch DIR`` and ``--work DIR``, for :func:`parser`'s options.
SCRATCH = (None, "where the runs write their files (a temporary directory inside it)", Path)
WORK = (None, "harvest directory, kept (default: a temporary one, deleted)", Path)


def workload(**defaults: float) -> dict[str, tuple[float, str]]:
    """The :data:`WORKLOAD` options named, with these defaults."""
    return {name: (default, WORKLOAD[name]) for name, default in defaults.items()}


def per_host(args: argparse.Namespace) -> int:
    """``--searches`` over ``--hosts``: the searches on each host (all hosts alike)."""
    if args.searches < args.hosts or args.hosts < 1:
        raise SystemExit("--searches must be at least --hosts, and --hosts at least 1")
    return int(args.searches // args.hosts)


def settings(kind: Any, args: argparse.Namespace, **given: Any) -> Any:
    """A dataclass ``kind`` of the ``given`` fields and the options of the same names.

    A field that is neither keeps its default.
    """
    names = {field.name for field in dataclasses.fields(kind)} - set(given)
    return kind(**{name: getattr(args, name) for name in names if hasattr(args, name)}, **given)


def parser(
    module: str, doc: str | None, options: Mapping[str, Any], smoke: Mapping[str, Any]
) -> argparse.ArgumentParser:
    """The option parser of the benchmark in file ``module`` (its ``__file__``).

    Every benchmark takes ``--smoke`` (which sets the ``smoke`` values) and
    ``--out DIR``. ``options`` maps an option's name (``file_mib`` for
    ``--file-mib``) to its default, or to ``(default, help)``, or to
    ``(default, help, type)``: a default of False is a flag, a type of
    ``Path`` an option shown as ``DIR``.
    """
    built = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{Path(module).stem}",
        description=(doc or "").split("\n\n")[0],
    )
    tiny = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in smoke.items())
    built.add_argument("--smoke", action="store_true", help=f"a tiny run to see it works: {tiny}")
    every = {"out": (RESULTS, "results directory", Path), **options}
    for name, given in every.items():
        spec = given if isinstance(given, tuple) else (given, "")
        default, text = spec[0], spec[1]
        flag = "--" + name.replace("_", "-")
        if default is False:
            built.add_argument(flag, action="store_true", help=text)
            continue
        kind = spec[2] if len(spec) > 2 else type(default)
        shown = f"{text} ({default})" if text else f"default {default}"
        if kind is Path:
            built.add_argument(flag, type=Path, default=default, metavar="DIR", help=text)
        else:
            built.add_argument(flag, type=kind, default=default, help=shown)
    return built


def arguments(
    module: str,
    doc: str | None,
    argv: Sequence[str] | None,
    options: Mapping[str, Any],
    smoke: Mapping[str, Any],
) -> argparse.Namespace:
    """:func:`parse` ``argv`` with the :func:`parser` of these options."""
    return parse(parser(module, doc, options, smoke), argv, smoke)


def parse(
    built: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    smoke: Mapping[str, Any] | None = None,
) -> argparse.Namespace:
    """Parse ``argv`` (the process's own when None); ``--smoke`` sets the ``smoke`` values.

    The namespace also holds ``command``: how the run is shown in a report.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    args = built.parse_args(words)
    if args.smoke and smoke:
        for key, value in smoke.items():
            setattr(args, key, value)
    args.command = command_line(built, words)
    return args


def command_line(built: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """``python -m benchmarks.NAME`` and its options, each path shown as its metavar."""
    paths = {
        option: action.metavar or "PATH"
        for action in built._actions
        if action.type is Path
        for option in action.option_strings
    }
    shown: list[str] = [built.prog]
    hidden: str | None = None
    for word in words:
        if hidden is not None:
            shown.append(hidden)
            hidden = None
            continue
        option, equals, _ = word.partition("=")
        if option in paths:
            if equals:
                shown.append(f"{option}={paths[option]}")
            else:
                shown.append(word)
                hidden = paths[option]
            continue
        shown.append("PATH" if word.startswith("/") else word)
    return " ".join(shown)


# --- the farm in a process of its own --------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs spent busy since boot (Linux /proc/stat), else None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def last_json(text: str, event: str | None = None) -> dict[str, Any]:
    """The last line of ``text`` that is a JSON object (with ``"event": event`` if given)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict) and (event is None or value.get("event") == event):
                    return value
    raise RuntimeError(f"no JSON line in the output:\n{text[-2000:]}")


class Farm:
    """``python -m voharvest.testing serve OPTIONS`` as a subprocess, for one ``with`` block.

    ``ready`` holds the farm's ready line (its hosts and URLs); after the block
    ``stopped`` holds its final counters (its "stopped" line), or ``{}`` if it
    printed none. Closing its stdin stops it; it also stops by itself after
    ``duration`` seconds.
    """

    def __init__(self, *options: str, duration: float = 1800.0, start_timeout: float = 60.0):
        self.command = [sys.executable, "-m", "voharvest.testing", "serve", *options]
        self.command += ["--duration", str(duration)]
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.stopped: dict[str, Any] = {}

    def start(self) -> Farm:
        """Start the farm's process without waiting for it (``with`` then waits)."""
        if self.process is None:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
            )
        return self

    def __enter__(self) -> Farm:
        if self.ready and self.process is not None:  # started and ready before the block
            return self
        self.start()
        assert self.process is not None and self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], self.start_timeout)
        line = self.process.stdout.readline() if readable else ""
        try:
            self.ready = last_json(line, "ready")
        except RuntimeError:
            self._end()
            raise RuntimeError(f"the farm did not start: {' '.join(self.command)}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        rest = self._end()
        with contextlib.suppress(RuntimeError):
            self.stopped = last_json(rest, "stopped")

    def _end(self) -> str:
        """Close the farm's stdin (it stops), read what it printed, and reap it."""
        process, self.process = self.process, None
        if process is None:
            return ""
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        return rest or ""

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return list(self.ready["hosts"])

    @staticmethod
    @contextlib.contextmanager
    def all_started(farms: Sequence[Farm]) -> Iterator[None]:
        """Every farm's process started at once (their start-ups overlap) and ready
        before the block runs (one waiting for its turn only ticks); each is then
        used in its ``with`` block as usual. Any still running at the end is stopped."""
        try:
            for farm in farms:
                farm.start()
            for farm in farms:
                farm.__enter__()
            yield
        finally:
            for farm in farms:
                farm._end()

    @property
    def sia1_urls(self) -> list[str]:
        return [host["sia1_url"] for host in self.hosts]

    @property
    def totals(self) -> dict[str, Any]:
        """The farm's totals over its life (after the block)."""
        return dict(self.stopped.get("totals", {}))

    def cpu_seconds(self) -> float | None:
        """CPU time the farm has used so far; None if unknown."""
        return None if self.process is None else process_cpu_seconds(self.process.pid)

    def counters(self) -> dict[str, Any]:
        """What one contender did to the farm: totals, and the worst host's violations."""
        totals = self.totals
        hosts = self.stopped.get("hosts", {})
        return {
            "requests": totals.get("requests"),
            "searches": totals.get("searches"),
            "rate_violations": totals.get("rate_violations"),
            "rate_violations_after_stall": totals.get("rate_violations_after_stall", 0),
            "farm_max_loop_lag_s": self.stopped.get("loop", {}).get("max_lag"),
            "statuses": totals.get("statuses", {}),
            "max_in_flight_one_host": totals.get("max_in_flight"),
            "most_violations_one_host": max(
                (h.get("rate_violations", 0) for h in hosts.values()), default=0
            ),
        }


class CpuSpan:
    """Clocks over a ``with`` block: wall seconds, and CPU seconds of this process
    (``own_s``), of the whole machine and of the farm (if any)."""

    def __init__(self, farm: Farm | None = None) -> None:
        self.farm = farm
        self.machine_s: float | None = None
        self.farm_s: float | None = None
        self.wall_s = self.own_s = 0.0

    def __enter__(self) -> CpuSpan:
        self._machine0 = machine_busy_seconds()
        self._farm0 = self.farm.cpu_seconds() if self.farm is not None else None
        self._own0 = time.process_time()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = time.perf_counter() - self.started
        self.own_s = time.process_time() - self._own0
        machine1 = machine_busy_seconds()
        farm1 = self.farm.cpu_seconds() if self.farm is not None else None
        if self._machine0 is not None and machine1 is not None:
            self.machine_s = machine1 - self._machine0
        if self._farm0 is not None and farm1 is not None:
            self.farm_s = farm1 - self._farm0

    def figures(self, client_cpu_s: float | None = None) -> dict[str, Any]:
        """``farm_cpu_s``; ``machine_busy`` (a share of all CPUs); what the rest used.

        With ``client_cpu_s`` (the measured client's own CPU), ``other_processes_cpu_s``
        is what neither it nor the farm used; without, ``client_side_cpu_s`` is all
        but the farm's.
        """
        out: dict[str, Any] = {}
        if self.machine_s is not None and self.wall_s > 0:
            out["machine_busy"] = self.machine_s / ((os.cpu_count() or 1) * self.wall_s)
        if self.farm_s is None:
            return out
        out["farm_cpu_s"] = self.farm_s
        if self.machine_s is not None and client_cpu_s is None:
            out["client_side_cpu_s"] = self.machine_s - self.farm_s
        elif self.machine_s is not None and client_cpu_s is not None:
            out["other_processes_cpu_s"] = max(0.0, self.machine_s - self.farm_s - client_cpu_s)
        return out


# --- the event loop ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class LoopLag:
    """``async with LoopLag()``: a task sleeps ``tick`` s in a loop, noting how late it wakes."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(self.tick)
            self.lags.append(time.perf_counter() - before - self.tick)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @staticmethod
    def text(summary: Mapping[str, Any]) -> str:
        """``p50 / p99 / max`` of a :meth:`summary`, in ms ("-" where unmeasured)."""
        return " / ".join(
            f"{summary[key]:.1f}" if key in summary else "-" for key in ("p50", "p99", "max")
        )

    def summary(self) -> dict[str, Any]:
        """Ticks, and the lag's p50, p99 and max in milliseconds."""
        if not self.lags:
            return {"ticks": 0}
        return {
            "ticks": len(self.lags),
            "p50": 1000 * percentile(self.lags, 50),
            "p99": 1000 * percentile(self.lags, 99),
            "max": 1000 * max(self.lags),
        }


def traced_session(starts: dict[str, list[float]]) -> Any:
    """An aiohttp session built as the client builds its own, lent to it by a benchmark.

    Each time a request's headers go out, ``time.perf_counter()`` is appended to
    ``starts["host:port"]``.
    """
    import aiohttp

    async def sent(session: Any, context: Any, params: Any) -> None:
        starts.setdefault(f"{params.url.host}:{params.url.port}", []).append(time.perf_counter())

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None),
        trace_configs=[trace],
    )


# --- files and workloads ----------------------------------------------------------------------


@contextlib.contextmanager
def scratch(prefix: str, where: Path | None = None) -> Iterator[Path]:
    """A fresh directory (in ``where``, else the system's temporary one), deleted at the end."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def workdir(given: Path | None, prefix: str) -> Iterator[Path]:
    """``given`` (created if need be, kept), or else a :func:`scratch` directory."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with scratch(prefix) as base:
        yield base


def git(*words: str) -> str:
    """What ``git WORDS`` prints in this repository ("" where git is missing)."""
    try:
        return subprocess.run(
            ["git", *words], capture_output=True, text=True, check=False, cwd=REPO
        ).stdout
    except OSError:
        return ""


def dirty_sources() -> list[str]:
    """Files under src/ with uncommitted changes when a benchmark ran (others may edit)."""
    return [line[3:] for line in git("status", "--porcelain", "src").splitlines() if line.strip()]


def positions(count: int) -> list[tuple[float, float]]:
    """``count`` distinct positions spread over the sky (a golden-angle spiral, |Dec| < 60)."""
    out = []
    for j in range(count):
        z = -0.85 + 1.7 * (j + 0.5) / count
        out.append((round((j * 137.50776405) % 360.0, 6), round(math.degrees(math.asin(z)), 6)))
    return out


def tile_ids(count: int) -> list[str]:
    """``count`` distinct farm tiles, along Dec bands from the equator northwards."""
    from voharvest.testing import tile_by_id

    ids: list[str] = []
    band = 450
    while len(ids) < count:
        index = 0
        while len(ids) < count:
            tile = tile_by_id(f"{band:03d}-{index:04d}")
            if tile is None or tile.id != f"{band:03d}-{index:04d}":
                break
            ids.append(tile.id)
            index += 1
        band += 1
        if band >= 900:
            raise ValueError(f"the sky has fewer than {count} tiles north of the equator")
    return ids


class FarmImages:
    """The bytes a farm serves for an image URL (``.../images/<tile>.fits``), cached."""

    def __init__(self, sky: Any, image_bytes: int) -> None:
        self.sky = sky
        self.image_bytes = image_bytes
        self._cache: dict[str, bytes] = {}

    def served(self, url: str) -> bytes:
        from urllib.parse import urlsplit

        from voharvest.testing import tile_by_id

        name = Path(urlsplit(url).path).name
        if name not in self._cache:
            tile = tile_by_id(name.removesuffix(".fits"))
            if tile is None:
                raise ValueError(f"{url} is not a farm image")
            self._cache[name] = self.sky.fits(tile, self.image_bytes, 16).read()
        return self._cache[name]
