"""``voharvest discover``: every image of the targets that the registry's image services hold."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._config import ClientConfig
from .._discovery_downloads import download
from .._exceptions import ParameterError
from ..client import VOClient
from ..harvesting import parse_target

__all__ = ["add_parser", "discover"]

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands: Any, size_help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "discover",
        help="find every image of the targets in the registry's image services",
        description="Find the SIA 1.0, SIA 2.0 and ObsCore services in the registry, ask "
        "each only about the targets its declared coverage holds (ObsCore with an upload "
        "of the targets, SIA 2.0 with several positions per request), skip services "
        "another one serves, and list every image once: access URL, format, targets, "
        "services. A summary per service goes to stderr.",
    )
    targets = parser.add_argument_group("targets")
    targets.add_argument("--target", action="append", help='a name or "ra dec" (repeatable)')
    targets.add_argument("--targets", type=Path, help="a file: one name or 'ra dec' per line")
    what = parser.add_argument_group("what to find")
    what.add_argument("--size", required=True, help=f"search radius: {size_help}")
    what.add_argument("--band", help="a wavelength the images cover: 600nm, 2.2um, 5e-7 (m)")
    what.add_argument(
        "--time", nargs="+", metavar="TIME", help="a time or START END (ISO dates or MJD)"
    )
    what.add_argument(
        "--inclusive", action="store_true", help="also ask services that declare no coverage"
    )
    what.add_argument(
        "--out",
        type=Path,
        help="download every image found into OUT/<target>/ (files already there are kept)",
    )
    what.add_argument(
        "--keep", action="append", help="with --out: only these MIME types (repeatable)"
    )
    what.add_argument(
        "--journal",
        type=Path,
        help="keep every answer in this file; the same command run again asks only the rest",
    )
    return parser


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.target or [])
    if args.targets is not None:
        try:
            lines = Path(args.targets).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ParameterError(f"--targets: can't read {args.targets}: {exc}") from exc
        texts += [line for line in lines if line.split("#", 1)[0].strip()]
    if not texts:
        raise ParameterError("give --target (repeatable) or --targets FILE")
    return texts


def _band(text: str | None) -> Any:
    if text is None:
        return None
    from astropy import units as u

    try:
        return float(text) * u.m
    except ValueError:
        pass
    try:
        value = u.Quantity(text)
        value.to(u.m, equivalencies=u.spectral())
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise ParameterError(f"--band: {text!r} is not a wavelength (600nm, 2.2um)") from exc
    return value


def _time(values: list[str] | None) -> Any:
    if not values:
        return None
    if len(values) > 2:
        raise ParameterError("--time: one time, or START END")
    from astropy.time import Time

    times = []
    for value in values:
        try:
            times.append(Time(float(value), format="mjd"))
        except ValueError:
            try:
                times.append(Time(value, scale="utc"))
            except ValueError as exc:
                raise ParameterError(f"--time: can't read {value!r}") from exc
    return times[0] if len(times) == 1 else (times[0], times[1])


async def discover(
    args: argparse.Namespace, config: ClientConfig, constraints: dict[str, Any]
) -> int:
    del constraints  # the registry query is discovery's own
    targets = [parse_target(text) for text in _texts(args)]
    positions: list[Any] = [
        t.name if t.position is None else (*t.position, str(t)) for t in targets
    ]
    band, time = _band(args.band), _time(args.time)
    if args.keep and args.out is None:
        raise ParameterError("--keep needs --out")
    fetched: list[tuple[Any, Any]] = []
    async with VOClient(config) as client:
        result = await client.discover(
            positions,
            size=args.size,
            band=band,
            time=time,
            inclusive=args.inclusive,
            journal=args.journal,
        )
        if args.out is not None:
            fetched = await download(client, result, args.out, formats=args.keep)
    for dataset in result.datasets:
        names = ",".join(str(targets[i]) for i in dataset.targets)
        services = ",".join(f"{ivoid}#{kind}" for ivoid, kind in dataset.services)
        print(f"{dataset.access_url}\t{dataset.format or '-'}\t{names}\t{services}")
    err = sys.stderr
    for s in sorted(result.services, key=lambda s: (s.status, s.ivoid, s.kind)):
        line = (
            f"{s.status:8} {s.kind:7} {s.ivoid}  asked {s.queried}, skipped {s.skipped}, "
            f"elided {s.elided}, failed {s.failed}; {s.requests} requests, {s.records} records"
        )
        print(line, file=err)
        for reason in s.elided_by:
            print(f"{'':17}elided: {reason}", file=err)
        for message in s.errors[:1]:
            print(f"{'':17}error: {message}", file=err)
    replayed = f" ({result.replayed} answers from the journal)" if result.replayed else ""
    print(
        f"{len(result.datasets)} datasets from {len(result.targets)} targets; "
        f"{result.requests} requests{replayed}",
        file=err,
    )
    if args.out is not None:
        errors = [(d, e) for d, e in fetched if not isinstance(e, Path)]
        print(f"{len(fetched) - len(errors)} files in {args.out}, {len(errors)} failed", file=err)
        for dataset, error in errors[:5]:
            print(f"  {dataset.access_url}: {error}", file=err)
    failed = any(s.failed for s in result.services) or any(
        not isinstance(e, Path) for _, e in fetched
    )
    return EXIT_FAILED if failed else EXIT_OK
