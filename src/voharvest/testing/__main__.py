"""``python -m voharvest.testing serve``: a VOFarm in a process of its own.

Prints one JSON line with the URLs once every host listens, serves until
stdin closes, SIGTERM/SIGINT, or ``--duration`` seconds, then prints one JSON
line with the counters. A benchmark starts it as a subprocess with
``stdin=PIPE``, reads the first line, and closes stdin to stop it.

``python -m voharvest.testing sky``: the embedded sky (:class:`EmbeddedSky`)
in a process of its own, for trying the command line offline: it prints the
``export`` lines that point voharvest at it, then serves until Ctrl-C, stdin
closes, or ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import signal
import stat
import sys
import threading
from collections.abc import Sequence

from .._exceptions import ParameterError
from ._config import HostConfig, parse_faults
from ._farm import VOFarm
from ._vo import discovery_vo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voharvest.testing",
        description="Simulated VO hosts on loopback (see docs/testing.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a farm until stdin closes, a signal, or --duration",
        description="Run a VOFarm; print its URLs as one JSON line, and its counters at the end.",
    )
    serve.add_argument(
        "--hosts", type=int, default=None, help="number of hosts (default 2; with --vo, its own)"
    )
    serve.add_argument("--seed", type=int, default=0, help="sky and fault seed (default 0)")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds to first byte")
    serve.add_argument("--rate", type=float, default=None, help="requests/s each host accepts")
    serve.add_argument("--burst", type=float, default=2.0, help="token bucket size (default 2)")
    serve.add_argument(
        "--no-enforce", action="store_true", help="count rate violations but serve them"
    )
    serve.add_argument(
        "--no-burst",
        action="store_true",
        help="refuse a request closer than 1/rate - --tolerance to the previous one",
    )
    serve.add_argument("--tolerance", type=float, default=0.015, help="no-burst slack (0.015)")
    serve.add_argument(
        "--retry-after",
        choices=("seconds", "date", "none"),
        default="seconds",
        help="how 429/503 say when to come back (seconds)",
    )
    serve.add_argument(
        "--retry-after-seconds",
        type=float,
        default=1.0,
        help="the seconds a 429/503 asks for, with --retry-after seconds (1)",
    )
    serve.add_argument(
        "--per-host",
        default="",
        help='JSON of host index to HostConfig fields, e.g. {"0": {"latency": 2}}',
    )
    serve.add_argument("--faults", default="", help="e.g. 503=0.1,reset=0.02")
    serve.add_argument("--stall-seconds", type=float, default=30.0, help="length of a stall")
    serve.add_argument("--image-bytes", type=int, default=64 * 1024, help="FITS file size")
    serve.add_argument("--bitpix", type=int, default=16, choices=(16, -32))
    serve.add_argument("--images-per-search", type=int, default=4)
    serve.add_argument("--bandwidth", type=float, default=None, help="bytes/s per image response")
    serve.add_argument("--no-range", action="store_true", help="ignore Range headers")
    serve.add_argument("--formats", default="image/fits,image/jpeg", help="offered formats")
    serve.add_argument(
        "--duration", type=float, default=3600.0, help="stop after this many seconds (3600)"
    )
    serve.add_argument("--ignore-stdin", action="store_true", help="don't stop when stdin closes")
    serve.add_argument(
        "--vo",
        choices=("discovery",),
        default=None,
        help="serve a VO for global discovery (sites, footprints, coverage; 18 hosts)",
    )
    sky = commands.add_parser(
        "sky",
        help="run the embedded sky (registry, name resolver, SIA services) until Ctrl-C",
        description="Run the embedded sky on 127.0.0.1 and print the environment variables "
        "that point voharvest at it (VOHARVEST_REGISTRY, VOHARVEST_SESAME).",
    )
    sky.add_argument("--json", action="store_true", help="print the URLs as one JSON line")
    sky.add_argument(
        "--duration", type=float, default=3600.0, help="stop after this many seconds (3600)"
    )
    sky.add_argument("--ignore-stdin", action="store_true", help="don't stop when stdin closes")
    return parser


def _stdin_is_devnull() -> bool:
    """True if stdin is /dev/null: its end says nothing about the parent going away."""
    try:
        ours, null = os.fstat(0), os.stat(os.devnull)
    except OSError:
        return True
    return stat.S_ISCHR(ours.st_mode) and ours.st_rdev == null.st_rdev


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def read() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, name="vofarm-stdin", daemon=True).start()


def _per_host(text: str, config: HostConfig) -> dict[int, HostConfig]:
    """``--per-host`` JSON as host configs: each the common one with the fields given."""
    if not text.strip():
        return {}
    try:
        given = json.loads(text)
        return {
            int(index): dataclasses.replace(config, **fields) for index, fields in given.items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        raise ParameterError(f"--per-host: {exc}") from exc


def _until_signalled(duration: float) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
    """The running loop, and an event SIGTERM or SIGINT sets (where signals can be
    handled); ``duration`` (the longest run) checked first."""
    if not duration > 0:
        raise ParameterError(f"--duration: expected a positive number, got {duration}")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return loop, stop


def _print(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> int:
    config = HostConfig(
        latency=args.latency,
        rate_limit=args.rate,
        burst=args.burst,
        enforce=not args.no_enforce,
        faults=parse_faults(args.faults),
        stall_seconds=args.stall_seconds,
        image_bytes=args.image_bytes,
        bitpix=args.bitpix,
        images_per_search=args.images_per_search,
        bandwidth=args.bandwidth,
        range_support=not args.no_range,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        no_burst=args.no_burst,
        tolerance=args.tolerance,
        retry_after=args.retry_after,
        retry_after_seconds=args.retry_after_seconds,
    )
    per_host = _per_host(args.per_host, config)
    loop, stop = _until_signalled(args.duration)
    vo = discovery_vo(args.seed) if args.vo == "discovery" else None
    hosts = args.hosts if args.hosts is not None else vo.hosts if vo is not None else 2
    async with VOFarm(hosts=hosts, config=config, seed=args.seed, per_host=per_host, vo=vo) as farm:
        # What was loaded so far (astropy among it) stays out of the garbage
        # collector's full passes: one took the farm's loop 65 ms, long enough to
        # see requests sent 100 ms apart arrive 40 ms apart. This process is the farm's.
        gc.freeze()
        _print({"event": "ready", "pid": os.getpid(), **farm.describe()})
        if not args.ignore_stdin and not _stdin_is_devnull():
            _watch_stdin(loop, stop)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    _print(
        {
            "event": "stopped",
            "totals": farm.totals().to_dict(),
            "hosts": {str(i): c.to_dict() for i, c in farm.counters.items()},
            "loop": farm.watch.to_dict(),
        }
    )
    return 0


async def sky(args: argparse.Namespace) -> int:
    from ._embedded import EmbeddedSky

    loop, stop = _until_signalled(args.duration)
    async with EmbeddedSky() as embedded:
        if args.json:
            _print({"event": "ready", "pid": os.getpid(), **embedded.describe()})
        else:
            for name, value in embedded.environ().items():
                sys.stdout.write(f"export {name}={value}\n")
            for key, service in embedded.describe()["services"].items():
                sys.stdout.write(f"# {key:8s} {service['access_url']}  {service['title']}\n")
            sys.stdout.write("# serving until Ctrl-C\n")
            sys.stdout.flush()
        if not args.ignore_stdin and not _stdin_is_devnull() and not sys.stdin.isatty():
            _watch_stdin(loop, stop)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(serve(args) if args.command == "serve" else sky(args))
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
