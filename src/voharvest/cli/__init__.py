"""The ``voharvest`` command line.

::

    voharvest registry --servicetype sia --waveband uv --keywords swift
    voharvest search <access-url | ivoid> --pos "M51" --size 0.2 --format image/fits
    voharvest harvest --target M51 --servicetype sia --waveband optical --keywords sloan \\
        --size 0.2 --format image/fits --out DIR
    voharvest status DIR
    voharvest preview DIR -o sheet.png
    voharvest demo --out voharvest-demo                          (the embedded sky, offline)
    voharvest adql --servicetype sia --waveband uv --keywords swift      (offline)

Exit codes: 0 everything succeeded; 1 something failed (a search, a download,
a service, or the harvest is incomplete); 2 usage error (a bad option or value);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .._auth import ENV_CERT, ENV_NETRC, ENV_TOKEN_FILE, Credentials, cert_from_spec, split_spec
from .._checks import angle
from .._config import ClientConfig, HostPolicy, RegistryEndpoint, RetryPolicy, Timeouts
from .._exceptions import ParameterError, VOHarvestError
from ..protocol import regtap, sia1, sia2

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


_SIZE_HELP = "degrees or an angle (2arcmin, 0.2deg), in (0, 180] deg; SIA 2.0: a diameter"


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _add_constraints(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry constraints", "Lists may be repeated options or comma-separated; all are ANDed."
    )
    group.add_argument("--servicetype", action="append", help="sia, sia2, ssa, scs, slap, tap, ...")
    group.add_argument(
        "--waveband", action="append", help="radio, millimeter, infrared, optical, uv, x-ray, ..."
    )
    group.add_argument("--keywords", action="append", help="words in title, description, subjects")
    group.add_argument("--author", help="creator name pattern (%% wildcard)")
    group.add_argument("--datamodel", help="obscore, epntap or regtap")
    group.add_argument("--ivoid", action="append", help="resource identifier(s), ivo://...")
    group.add_argument("--ucd", action="append", help="column UCD pattern(s)")
    group.add_argument("--includeaux", action="store_true", help="include auxiliary capabilities")
    group.add_argument("--maxrec", type=int, help="at most this many resources")


def _constraints(args: argparse.Namespace) -> dict[str, Any]:
    found = {
        "servicetype": _split(args.servicetype),
        "waveband": _split(args.waveband),
        "keywords": _split(args.keywords),
        "author": args.author,
        "datamodel": args.datamodel,
        "ivoid": _split(args.ivoid),
        "ucd": _split(args.ucd),
        "maxrec": args.maxrec,
    }
    constraints = {name: value for name, value in found.items() if value is not None}
    if constraints and args.includeaux:
        constraints["includeaux"] = True
    return constraints


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("politeness and retries (per host)")
    group.add_argument("--rate", type=float, default=10.0, help="requests/s per host (default 10)")
    group.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="no request rate per host (--concurrency still holds)",
    )
    group.add_argument(
        "--concurrency", type=int, default=8, help="connections per host (default 8)"
    )
    group.add_argument("--attempts", type=int, default=5, help="tries per request (default 5)")
    group.add_argument("--connect-timeout", type=float, default=30.0, help="seconds (default 30)")
    group.add_argument(
        "--read-timeout", type=float, default=60.0, help="stall timeout, seconds (default 60)"
    )
    group.add_argument(
        "--total-timeout", type=float, default=300.0, help="per metadata request (default 300)"
    )
    group.add_argument("--registry", action="append", help="RegTAP endpoint(s), tried in order")
    group.add_argument("--sesame", action="append", help="Sesame endpoint(s), tried in order")
    group.add_argument(
        "--insecure", action="store_true", help="don't verify TLS certificates (not recommended)"
    )
    auth = parser.add_argument_group(
        "credentials (docs/auth.md)",
        "Each goes only to the origin (scheme, host, port) and path it is bound to; also "
        f"read from ${ENV_NETRC}, ${ENV_TOKEN_FILE} and ${ENV_CERT} (same syntax).",
    )
    auth.add_argument(
        "--netrc", help="netrc file: 'machine HOST' is https://HOST; a machine may be a URL"
    )
    auth.add_argument(
        "--token-file",
        action="append",
        metavar="[SCOPE=]FILE",
        help="bearer token(s): SCOPE=FILE holds one token for SCOPE (an http(s) URL); "
        "FILE alone holds 'SCOPE TOKEN' lines (repeatable)",
    )
    auth.add_argument(
        "--cert",
        action="append",
        metavar="SCOPE=CERT[,KEY]",
        help="TLS client certificate (PEM) for the https SCOPE (repeatable)",
    )
    auth.add_argument(
        "--capabilities",
        action="append",
        metavar="URL",
        help="a service's VOSI capabilities, read first: credentials then go only where "
        "its interfaces accept their method (repeatable)",
    )


def _say_deprecated(old: str, new: str) -> None:
    """A deprecated option still works; standard error says what replaces it."""
    print(f"voharvest: {old} is deprecated; use {new}", file=sys.stderr)


def _client_config(args: argparse.Namespace) -> ClientConfig:
    extra: dict[str, Any] = {}
    if args.registry:
        extra["registries"] = tuple(RegistryEndpoint(url) for url in args.registry)
    if args.sesame:
        extra["sesame"] = tuple(args.sesame)
    rate = math.inf if args.no_rate_limit else args.rate
    if rate <= 0:
        _say_deprecated("--rate 0 (or less) for no limit", "--no-rate-limit")
        rate = math.inf
    credentials = _credentials(args)
    if credentials:
        extra["credentials"] = credentials
    return ClientConfig(
        timeouts=Timeouts(
            connect=args.connect_timeout, read=args.read_timeout, total=args.total_timeout
        ),
        retry=RetryPolicy(attempts=args.attempts),
        host=HostPolicy(rate=rate, concurrency=args.concurrency),
        verify_tls=not args.insecure,
        **extra,
    )


def _credentials(args: argparse.Namespace) -> Credentials:
    """The credentials the options and the environment name (files are read later)."""
    return Credentials(
        netrc=args.netrc,
        token_files=tuple(split_spec(spec) for spec in args.token_file or ()),
        cert_files=tuple(cert_from_spec(spec) for spec in args.cert or ()),
        environment=any(name in os.environ for name in (ENV_NETRC, ENV_TOKEN_FILE, ENV_CERT)),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voharvest",
        description="Fast, polite, resumable harvesting of the IVOA Virtual Observatory.",
        epilog="Exit codes: 0 all succeeded, 1 something failed or is incomplete, "
        "2 usage error, 130 interrupted. Try it offline: voharvest demo",
    )
    parser.add_argument("--version", action="version", version=f"voharvest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    registry = commands.add_parser(
        "registry",
        help="find services in the registry",
        description="Search the registry (RegTAP) and list matching resources with their "
        "SIA/TAP access URLs.",
    )
    _add_constraints(registry)
    _add_client_options(registry)

    search = commands.add_parser(
        "search",
        help="run one SIA search and list the images found",
        description="Run an SIA search on one service (an access URL, or an ivoid looked "
        "up in the registry) and list the records: access URL, format, title.",
    )
    search.add_argument("service", help="SIA access URL, or an ivoid (ivo://...)")
    search.add_argument("--pos", required=True, help='a name ("M51") or "ra dec" in degrees')
    search.add_argument("--size", required=True, help=_SIZE_HELP)
    search.add_argument("--format", help="FORMAT, e.g. image/fits, image/jpeg, ALL")
    search.add_argument("--sia2", action="store_true", help="the service is SIA 2.0")
    _add_client_options(search)

    harvest = commands.add_parser(
        "harvest",
        help="search many positions on many services and download the images",
        description="Search every service around every target and download the chosen "
        "images into --out, politely and resumably: run the same command again on the "
        "same --out to finish what remains.",
    )
    targets = harvest.add_argument_group("targets")
    targets.add_argument("--target", action="append", help='a name or "ra dec" (repeatable)')
    targets.add_argument("--targets", type=Path, help="a file: one name or 'ra dec' per line")
    services = harvest.add_argument_group(
        "services", "Given directly, or found with registry constraints (or both)."
    )
    services.add_argument("--service", action="append", help="SIA 1.0 access URL (repeatable)")
    services.add_argument("--sia2", action="append", help="SIA 2.0 access URL (repeatable)")
    services.add_argument(
        "--cutout-service",
        action="append",
        help="SIA 1.0 access URL of a Cutout-type service: its images are cut to the "
        "search, so --cutout searches the cutout's size there (repeatable)",
    )
    _add_constraints(harvest)
    what = harvest.add_argument_group("what to fetch")
    what.add_argument("--size", required=True, help=_SIZE_HELP)
    what.add_argument("--format", help="FORMAT sent with each search, e.g. image/fits")
    what.add_argument(
        "--keep", action="append", help="MIME types of records to download (default: --format)"
    )
    what.add_argument("--max-records", type=int, help="at most N records per target and service")
    what.add_argument(
        "--cutout",
        help="a SODA cutout around each target instead of the full frame: a radius "
        "('3arcmin') or a box ('4arcmin x 2arcmin'); needs DataLink/SODA services",
    )
    what.add_argument(
        "--cutout-fallback",
        choices=("full", "skip"),
        default="full",
        help="for records that can't be cut: take the full frame (default) or nothing",
    )
    what.add_argument("--out", type=Path, required=True, help="output directory (and journal)")
    what.add_argument("--searches", type=int, default=32, help="searches in flight (default 32)")
    what.add_argument("--downloads", type=int, default=16, help="downloads in flight (default 16)")
    what.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    _add_client_options(harvest)

    from ._discover import add_parser as add_discover

    _add_client_options(add_discover(commands, _SIZE_HELP.split(";")[0]))

    status = commands.add_parser(
        "status", help="what a harvest did so far", description="Summarise a harvest's journal."
    )
    status.add_argument("directory", type=Path)

    preview = commands.add_parser(
        "preview",
        help="a contact sheet of the harvested images",
        description="Draw a harvest's images into one PNG: one row per target, one column "
        "per service, FITS stretched (ZScale, asinh), the target marked from the WCS, north "
        "and east shown. Files that are not images are skipped and counted.",
    )
    preview.add_argument("directory", type=Path)
    preview.add_argument(
        "-o", "--output", type=Path, default=Path("sheet.png"), help="the PNG (sheet.png)"
    )
    preview.add_argument(
        "--targets", type=int, default=8, help="at most this many targets, as rows (default 8)"
    )
    preview.add_argument(
        "--services", type=int, default=6, help="at most this many services, as columns (6)"
    )

    demo = commands.add_parser(
        "demo",
        help="the whole workflow on an embedded simulated sky (no internet)",
        description="Start a simulated VO on 127.0.0.1 (a registry, a name resolver, SIA 1.0 "
        "and 2.0 services with DataLink and SODA, one synthetic sky), run the NAVO notebook's "
        "workflow against it with the real code, harvest a few targets, and draw the preview.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("voharvest-demo"), help="where (voharvest-demo)"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars or lines")

    adql = commands.add_parser(
        "adql",
        help="print the RegTAP ADQL query for registry constraints (offline)",
        description="Print the RegTAP 1.1 ADQL query a registry search with these "
        "constraints sends. Lists may be given as repeated options or comma-separated.",
    )
    _add_constraints(adql)

    url = commands.add_parser(
        "sia-url",
        help="print the query URL of an SIA search (offline)",
        description="Print the SIA query URL for an access URL and a position in ICRS degrees.",
    )
    url.add_argument("access_url")
    url.add_argument("--ra", type=float, required=True, help="ICRS right ascension, degrees")
    url.add_argument("--dec", type=float, required=True, help="ICRS declination, degrees")
    url.add_argument(
        "--size",
        required=True,
        help=_SIZE_HELP,
    )
    url.add_argument("--format", help="FORMAT (e.g. image/fits, ALL)")
    url.add_argument("--version2", action="store_true", help="SIA 2.0 instead of 1.0")
    return parser


def _offline(args: argparse.Namespace) -> int:
    if args.command == "adql":
        print(regtap.build_query(**_constraints(args)))
    elif args.version2:
        shape = (args.ra, args.dec, args.size / 2)  # a circle of diameter --size
        print(sia2.build_url(args.access_url, pos=shape, format=args.format))
    else:
        print(
            sia1.build_url(
                args.access_url, pos=(args.ra, args.dec), size=args.size, format=args.format
            )
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; ``argv`` None: this process's own arguments (``sys.argv``),
    and the process is the command line's (see :mod:`voharvest.cli._process`)."""
    if argv is None:
        from ._process import tune_malloc

        tune_malloc()
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``voharvest status DIR | head -1``): not an error of ours.
        # Point stdout at /dev/null so that the interpreter's final flush can't fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "size", None) is not None:  # the library's one angle parser
            args.size = angle(args.size, "--size")
        if args.command in ("adql", "sia-url"):
            return _offline(args)
        from . import _commands

        if args.command == "status":
            return _commands.status(args.directory)
        if args.command == "preview":
            return _commands.preview(args.directory, args.output, args.targets, args.services)
        if args.command == "demo":
            from ._demo import run_demo

            return asyncio.run(run_demo(args.out, progress=not args.no_progress))
        from ._discover import discover

        runner = {
            "discover": discover,
            "registry": _commands.registry,
            "search": _commands.search,
            "harvest": _commands.harvest,
        }[args.command]
        return asyncio.run(
            runner(
                args,
                _client_config(args),
                _constraints(args) if hasattr(args, "servicetype") else {},
            )
        )
    except ParameterError as exc:
        print(f"voharvest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VOHarvestError as exc:
        print(f"voharvest: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("voharvest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
