"""The ``voharvest`` command line.

Sub-commands so far:

- ``voharvest adql``: print the RegTAP ADQL query for registry constraints
  (works offline; the query a ``registry`` search would send).
- ``voharvest sia-url``: print the SIA v1 or v2 query URL for a search.

Exit codes: 0 success, 2 usage error (bad option or value).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from ._exceptions import ParameterError
from .protocol import regtap, sia1, sia2


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voharvest",
        description="Fast, polite, resumable harvesting of the IVOA Virtual Observatory.",
    )
    parser.add_argument("--version", action="version", version=f"voharvest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    adql = commands.add_parser(
        "adql",
        help="print the RegTAP ADQL query for registry constraints",
        description="Print the RegTAP 1.1 ADQL query a registry search with these "
        "constraints sends. Lists may be given as repeated options or comma-separated.",
    )
    adql.add_argument("--servicetype", action="append", help="sia, sia2, ssa, scs, slap, tap, ...")
    adql.add_argument(
        "--waveband", action="append", help="radio, infrared, optical, uv, x-ray, ..."
    )
    adql.add_argument("--keywords", action="append", help="words in title, description or subjects")
    adql.add_argument("--author", help="creator name pattern (%% wildcard)")
    adql.add_argument("--datamodel", help="obscore, epntap or regtap")
    adql.add_argument("--ivoid", action="append", help="resource identifier(s)")
    adql.add_argument("--ucd", action="append", help="column UCD pattern(s)")
    adql.add_argument("--includeaux", action="store_true", help="include auxiliary capabilities")
    adql.add_argument("--maxrec", type=int, help="at most this many resources")

    url = commands.add_parser(
        "sia-url",
        help="print the query URL of an SIA search",
        description="Print the SIA query URL for an access URL and a position in ICRS degrees.",
    )
    url.add_argument("access_url")
    url.add_argument("--ra", type=float, required=True, help="ICRS right ascension, degrees")
    url.add_argument("--dec", type=float, required=True, help="ICRS declination, degrees")
    url.add_argument("--size", type=float, required=True, help="size (v1) or radius (v2), degrees")
    url.add_argument("--format", help="FORMAT (e.g. image/fits, ALL)")
    url.add_argument("--version2", action="store_true", help="SIA 2.0 instead of 1.0")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "adql":
            text = regtap.build_query(
                servicetype=_split(args.servicetype),
                waveband=_split(args.waveband),
                keywords=_split(args.keywords),
                author=args.author,
                datamodel=args.datamodel,
                ivoid=_split(args.ivoid),
                ucd=_split(args.ucd),
                includeaux=args.includeaux,
                maxrec=args.maxrec,
            )
        elif args.version2:
            text = sia2.build_url(
                args.access_url, pos=(args.ra, args.dec, args.size), format=args.format
            )
        else:
            text = sia1.build_url(
                args.access_url, pos=(args.ra, args.dec), size=args.size, format=args.format
            )
    except ParameterError as exc:
        print(f"voharvest: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
