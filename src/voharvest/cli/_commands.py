"""The commands that talk to the network or read a harvest's journal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from .._config import ClientConfig
from .._exceptions import ParameterError, VOHarvestError
from ..client import VOClient
from ..harvesting import JOURNAL_NAME, Harvest, HarvestOptions, parse_target
from ..harvesting.manifest import status as journal_status
from ..harvesting.manifest import write_manifest
from ..services import SIA2Service, SIAService
from ._progress import Progress, format_bytes, host_summary, origin_sort_key

__all__ = ["harvest", "preview", "registry", "search", "status"]

EXIT_OK, EXIT_FAILED = 0, 1


def _out(text: str = "") -> None:
    print(text, flush=True)


async def registry(
    args: argparse.Namespace, config: ClientConfig, constraints: dict[str, Any]
) -> int:
    if not constraints:
        raise ParameterError("give at least one registry constraint (e.g. --servicetype sia)")
    async with VOClient(config) as client:
        resources = await client.regsearch(**constraints)
    for resource in resources:
        _out(f"{resource.ivoid}\t{resource.short_name}\t{resource.title}")
        for interface in resource.interfaces:
            if interface.kind and interface.access_url and not interface.is_vosi:
                _out(f"    {interface.kind:5s} {interface.access_url}")
    print(f"{len(resources)} resources", file=sys.stderr)
    return EXIT_OK


async def _service_for(client: VOClient, spec: str, *, version2: bool) -> SIAService | SIA2Service:
    if spec.lower().startswith("ivo://"):
        found = await client.regsearch(ivoid=spec)
        if not found:
            raise ParameterError(f"the registry doesn't know {spec}")
        kind = "sia2" if version2 else ("sia" if "sia" in found[0].service_kinds else "sia2")
        service = found[0].service(kind)
        assert isinstance(service, SIAService | SIA2Service)
        return service
    return client.sia_service(spec, version=2 if version2 else 1)


async def _learn(client: VOClient, args: argparse.Namespace) -> None:
    """Read the services' capabilities named with --capabilities (docs/auth.md)."""
    for url in getattr(args, "capabilities", None) or ():
        await client.capabilities(url)


async def search(
    args: argparse.Namespace, config: ClientConfig, constraints: dict[str, Any]
) -> int:
    target = parse_target(args.pos)
    async with VOClient(config) as client:
        await _learn(client, args)
        service = await _service_for(client, args.service, version2=args.sia2)
        position: Any = target.position
        if position is None:
            position = await client.resolve(target.name or "")
        if isinstance(service, SIA2Service):
            coord = (
                position
                if isinstance(position, tuple)
                else (
                    position.icrs.ra.deg,
                    position.icrs.dec.deg,
                )
            )
            params: dict[str, Any] = {"pos": (coord[0], coord[1], args.size / 2)}
            if args.format:
                params["format"] = args.format
            results = await service.search(**params)
        else:
            results = await service.search(position, args.size, format=args.format)
    for record in results:
        _out(f"{record.getdataurl()}\t{record.format or '-'}\t{record.title or '-'}")
    print(
        f"{len(results)} records" + (" (truncated by the service)" if results.overflow else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _targets(args: argparse.Namespace) -> list[Any] | Path:
    if args.targets is not None and args.target:
        raise ParameterError("give --target or --targets, not both")
    if args.targets is not None:
        path = Path(args.targets)
        if not path.is_file():
            raise ParameterError(f"--targets: no such file {path}")
        return path
    if not args.target:
        raise ParameterError("give --target (repeatable) or --targets FILE")
    return list(args.target)


def _searches_done(directory: Path) -> int:
    """Searches a journal in ``directory`` has done (0 without a journal)."""
    if not (Path(directory) / JOURNAL_NAME).is_file():
        return 0
    try:
        return journal_status(directory).total.searches_done
    except VOHarvestError:
        return 0


def _count_targets(targets: list[Any] | Path) -> int | None:
    """How many targets there are (a file's lines that aren't blank or comments)."""
    if not isinstance(targets, Path):
        return len(targets)
    try:
        with targets.open(encoding="utf-8", errors="replace") as lines:
            return sum(1 for line in lines if line.split("#", 1)[0].strip())
    except OSError:
        return None


async def harvest(
    args: argparse.Namespace, config: ClientConfig, constraints: dict[str, Any]
) -> int:
    targets = _targets(args)
    options = HarvestOptions(
        size=args.size,
        search_format=args.format,
        keep_formats=tuple(args.keep) if args.keep else None,
        max_records=args.max_records,
        searches=args.searches,
        downloads=args.downloads,
        cutout=args.cutout,
        cutout_fallback=args.cutout_fallback,
    )
    async with VOClient(config) as client:
        await _learn(client, args)
        services: list[Any] = list(args.service or [])
        services += [client.sia_service(url, version=2) for url in args.sia2 or []]
        services += [client.sia_service(url, cuts=True) for url in args.cutout_service or []]
        if constraints:
            found = await client.regsearch(**constraints)
            usable = [r for r in found if {"sia", "sia2"} & set(r.service_kinds)]
            print(
                f"registry: {len(found)} resources, {len(usable)} with an SIA service",
                file=sys.stderr,
            )
            services += usable
        if not services:
            raise ParameterError(
                "no services: give --service/--sia2/--cutout-service URLs or registry constraints "
                "that find some"
            )
        run = Harvest(client, services, targets, options, download_to=args.out)
        known = _count_targets(targets)
        # A resumed harvest skips the searches its journal has done.
        done = await asyncio.to_thread(_searches_done, args.out)
        searches = None if known is None else max(0, known * len(run.totals) - done)
        progress = None if args.no_progress else Progress(searches_total=searches)
        failed = 0

        def retries() -> int:
            return sum(one.retries for one in client.stats.values())

        async for item in run:
            if not item.ok:
                failed += 1
                print(
                    f"failed {item.kind} {item.service} / {item.target}: {item.error}",
                    file=sys.stderr,
                    flush=True,
                )
            if progress is not None:
                progress.update(item, retries())
        if progress is not None:
            progress.close(retries())
        print(host_summary(client.stats), file=sys.stderr)
    written = await asyncio.to_thread(write_manifest, args.out)
    print(f"manifest: {', '.join(str(p) for p in written)}", file=sys.stderr)
    summary = journal_status(args.out)
    total = summary.total
    print(
        f"{total.searches_done} searches done, {total.searches_failed} failed; "
        f"{total.records_done} files ({format_bytes(total.bytes)}), "
        f"{total.records_failed + total.records_pending} not fetched"
        + (f", {total.records_skipped} without a cutout skipped" if total.records_skipped else ""),
        file=sys.stderr,
    )
    return EXIT_OK if failed == 0 and summary.complete else EXIT_FAILED


def _service_order(key: str) -> tuple[Any, ...]:
    """Service keys (``sia1 <url>``) in the order of their hosts' addresses, then URLs."""
    kind, _, url = key.partition(" ")
    return (origin_sort_key(url), url, kind)


def _skipped(count: int) -> str:
    return f", {count} skipped (no cutout)" if count else ""


def status(directory: Path) -> int:
    summary = journal_status(directory)
    for key, one in sorted(summary.services.items(), key=lambda item: _service_order(item[0])):
        _out(
            f"{key}\n    searches {one.searches_done} done, {one.searches_failed} failed; "
            f"files {one.records_done} done, {one.records_pending} pending, "
            f"{one.records_failed} failed{_skipped(one.records_skipped)}; "
            f"{format_bytes(one.bytes)}"
        )
    total = summary.total
    _out(
        f"total: searches {total.searches_done} done, {total.searches_failed} failed; "
        f"files {total.records_done} done, {total.records_pending} pending, "
        f"{total.records_failed} failed{_skipped(total.records_skipped)}; "
        f"{format_bytes(total.bytes)}"
    )
    for kind, key, what, error in summary.failures:
        _out(f"  failed {kind} {what} ({key}): {error}")
    if summary.complete:
        _out("complete")
    elif not summary.finished:
        _out("incomplete: the last run stopped early; run the same harvest again to go on")
    else:
        _out("incomplete: some tasks failed; run the same harvest again to retry them")
    return EXIT_OK if summary.complete else EXIT_FAILED


def preview(directory: Path, output: Path, max_targets: int, max_services: int) -> int:
    if max_targets < 1 or max_services < 1:
        raise ParameterError("--targets and --services must be at least 1")
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # a core dependency, but an environment may lack it
        raise ParameterError("preview needs matplotlib: pip install matplotlib") from exc
    from ._preview import contact_sheet

    sheet = contact_sheet(directory, output, max_targets=max_targets, max_services=max_services)
    skipped = f"; {sheet.skipped} files that are not images skipped" if sheet.skipped else ""
    left_out = f"; {sheet.left_out} files beyond the limits left out" if sheet.left_out else ""
    if not sheet.cells:
        print(f"no images to show in {directory}{skipped}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{output}: {len(sheet.targets)} targets x {len(sheet.services)} services, "
        f"{len(sheet.cells)} images{skipped}{left_out}",
        file=sys.stderr,
    )
    return EXIT_OK
