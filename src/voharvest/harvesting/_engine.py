"""The harvest engine: services x targets -> searches -> chosen records -> downloads.

A fixed set of workers is fed from bounded queues, and targets are read one
at a time, so memory does not grow with the number of targets. Items come
back in completion order; a failed search or download is an item carrying
its typed error, never the end of the batch. With an output directory, a
SQLite journal there makes the harvest resumable: running it again finishes
only what remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiofiles.os

from .._config import origin_of
from .._exceptions import DataLinkError, ParameterError, VOHarvestError
from .._files import inside
from ..protocol import angle
from ..protocol.datalink import (
    DATALINK_MIME,
    DataLinks,
    Dataset,
    is_datalink_format,
    plan_datasets,
    same_format,
)
from ..protocol.soda import Cutout
from ..services import RegistryResource, SIA2Service, SIAService
from ._fair import FairQueue
from ._journal import FoundRecord, Journal, PendingRecord
from ._naming import extension_for, record_filename, service_folder, url_hash
from ._targets import Target, iter_targets

if TYPE_CHECKING:
    from ..client import VOClient
    from ..protocol.records import ImageRecord, SIAResults

__all__ = [
    "Harvest",
    "HarvestItem",
    "HarvestOptions",
    "HarvestTotals",
    "UnexpectedError",
    "harvest",
]

logger = logging.getLogger("voharvest.harvest")

_STOP: Any = object()


class UnexpectedError(VOHarvestError):
    """A bug, not a service's fault: an exception the harvest did not expect (see its cause)."""


@dataclass(frozen=True, kw_only=True)
class HarvestOptions:
    """What to search and what to keep.

    - ``size``: search size (SIA v1 SIZE; for SIA v2 a circle of this
      diameter): degrees, a Quantity or text such as ``"2arcmin"``, in
      (0, 180] deg; kept in degrees.
    - ``format``: the FORMAT sent with each search (None: not sent).
    - ``formats``: MIME types (shell patterns such as ``image/*`` allowed) of
      the records to keep; None keeps every record with a data URL. When
      ``format`` is a MIME type and ``formats`` is not given, ``format`` is used.
    - ``max_records``: at most this many records per (service, target).
    - ``searches`` / ``downloads``: workers in flight (hosts still get their
      own politeness limits from the client).
    - ``cutout``: a :class:`~voharvest.Cutout` (or a radius: ``"3arcmin"``, a
      Quantity, degrees) to cut around each target instead of taking full
      frames, through the SODA service a record's DataLink document offers.
    - ``cutout_fallback``: for records that offer no cutout (no DataLink
      document, or one without a SODA service): ``full`` takes the full frame
      (the manifest says so), ``skip`` takes nothing (the journal says why).

    Records whose access URL is a DataLink document are resolved to their
    dataset (the ``#this`` link; in a format of ``formats`` when given) or to
    their cutout; the links document itself is never saved as the file.
    """

    size: float = 0.1
    format: str | None = None
    formats: tuple[str, ...] | None = None
    max_records: int | None = None
    searches: int = 32
    downloads: int = 16
    cutout: Cutout | None = None
    cutout_fallback: str = "full"

    def __post_init__(self) -> None:
        if self.cutout is not None:
            object.__setattr__(self, "cutout", Cutout.parse(self.cutout))
        if self.cutout_fallback not in ("full", "skip"):
            raise ParameterError(
                f"cutout_fallback: expected full or skip, got {self.cutout_fallback!r}"
            )
        if isinstance(self.formats, str):
            object.__setattr__(self, "formats", (self.formats,))
        elif self.formats is not None:
            object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "size", angle(self.size, "size"))
        if self.max_records is not None and (
            isinstance(self.max_records, bool)
            or not isinstance(self.max_records, int)
            or self.max_records < 1
        ):
            raise ParameterError(
                f"max_records: expected a positive integer, got {self.max_records!r}"
            )
        for name in ("searches", "downloads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}: expected a positive integer, got {value!r}")
        if self.formats is not None and not all(isinstance(f, str) and f for f in self.formats):
            raise ParameterError(f"formats: expected MIME types, got {self.formats!r}")

    @property
    def kept_formats(self) -> tuple[str, ...] | None:
        if self.formats is not None:
            return tuple(f.lower() for f in self.formats)
        if self.format and "/" in self.format:
            return (self.format.lower(),)
        return None

    def journal_view(self) -> dict[str, Any]:
        """The options that decide what a harvest fetches (workers don't)."""
        view: dict[str, Any] = {
            "size": float(self.size),
            "format": self.format,
            "formats": sorted(set(self.kept_formats)) if self.kept_formats else None,
            "max_records": self.max_records,
        }
        if self.cutout is not None:  # (journals of harvests without cutouts stay as they were)
            view["cutout"] = self.cutout.journal_view()
            view["cutout_fallback"] = self.cutout_fallback
        return view


@dataclass(frozen=True)
class HarvestItem:
    """One finished piece of work: a search or a download, succeeded or failed."""

    kind: Literal["search", "download"]
    service: str
    target: str
    url: str | None = None
    path: Path | None = None
    records: int = 0
    bytes: int = 0
    skipped: bool = False
    error: VOHarvestError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class HarvestTotals:
    """Counts per service so far (a live view)."""

    searches: int = 0
    searches_failed: int = 0
    records: int = 0
    downloads: int = 0
    downloads_failed: int = 0
    skipped: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class _Service:
    key: str
    label: str
    folder: str
    endpoint: SIAService | SIA2Service
    title: str = ""
    waveband: str = ""

    async def search(self, position: Any, options: HarvestOptions) -> SIAResults:
        if isinstance(self.endpoint, SIA2Service):
            ra, dec = position
            params: dict[str, Any] = {"pos": (ra, dec, options.size / 2)}
            if options.format:
                # A FITS image behind a DataLink document is still a FITS image:
                # ask for those rows too (FORMAT values are OR'ed in SIA 2.0).
                wanted = [options.format]
                if "/" in options.format and not is_datalink_format(options.format):
                    wanted.append(DATALINK_MIME)
                params["format"] = wanted
            return await self.endpoint.search(**params)
        size: Any = options.size
        if options.cutout is not None and self.cuts:
            # The service cuts its images to the search: search the cutout's box.
            width, height = options.cutout.extent
            size = width if width == height else (width, height)
        return await self.endpoint.search(position, size, format=options.format)

    @property
    def cuts(self) -> bool:
        """An SIA 1.0 service of the Cutout type: its images are cut to the search."""
        return isinstance(self.endpoint, SIAService) and self.endpoint.cuts


def _service(client: VOClient, value: Any) -> _Service:
    title = waveband = ""
    if isinstance(value, RegistryResource):
        kinds = value.service_kinds
        kind = "sia" if "sia" in kinds else "sia2" if "sia2" in kinds else None
        if kind is None:
            raise ParameterError(f"{value.ivoid} offers no SIA service")
        endpoint = value.service(kind)
        assert isinstance(endpoint, SIAService | SIA2Service)
        label = value.short_name or value.ivoid.rsplit("/", 1)[-1]
        title, waveband = value.title, ", ".join(value.wavebands)
    elif isinstance(value, SIAService | SIA2Service):
        endpoint = value
        label = value.access_url.split("//", 1)[-1].split("/", 1)[0]
    elif isinstance(value, str):
        endpoint = SIAService(client, value)
        label = value.split("//", 1)[-1].split("/", 1)[0]
    else:
        raise ParameterError(f"can't harvest from {value!r}: give SIA services or access URLs")
    version = 2 if isinstance(endpoint, SIA2Service) else 1
    key = f"sia{version} {endpoint.access_url}"
    folder = service_folder(label, endpoint.access_url)
    return _Service(key, label, folder, endpoint, title, waveband)


def _keeps(record: ImageRecord, formats: tuple[str, ...] | None) -> bool:
    if formats is None:
        return True
    mime = (record.format or "").split(";", 1)[0].strip().lower()
    return bool(mime) and any(fnmatch.fnmatchcase(mime, pattern) for pattern in formats)


class Harvest:
    """An async iterable of :class:`HarvestItem`; see :func:`harvest`."""

    def __init__(
        self,
        client: VOClient,
        services: Any,
        targets: Any,
        options: HarvestOptions,
        *,
        download_to: str | Path | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.out = Path(download_to) if download_to is not None else None
        if isinstance(services, str | RegistryResource | SIAService | SIA2Service):
            services = [services]
        unique: dict[str, _Service] = {}
        for value in services:
            service = _service(client, value)
            unique.setdefault(service.key, service)
        if not unique:
            raise ParameterError("no services to harvest")
        # Labels name services in items and totals: make them distinct.
        self._services = []
        seen: dict[str, int] = {}
        for service in unique.values():
            count = seen[service.label] = seen.get(service.label, 0) + 1
            if count > 1:
                service = dataclasses.replace(service, label=f"{service.label}#{count}")
            self._services.append(service)
        self._targets = targets
        self._journal: Journal | None = None
        self.totals: dict[str, HarvestTotals] = {s.label: HarvestTotals() for s in self._services}
        self._by_key = {s.key: s for s in self._services}
        self._started = False

    # --- iteration ------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[HarvestItem]:
        if self._started:
            raise ParameterError("a Harvest runs once; make a new one to run again")
        self._started = True
        results: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        engine = asyncio.create_task(self._engine(results))
        try:
            while True:
                getter = asyncio.ensure_future(results.get())
                await asyncio.wait({getter, engine}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    # The engine ended without its last word: it failed.
                    getter.cancel()
                    while not results.empty():
                        item = results.get_nowait()
                        if item is not _STOP:
                            yield item
                    _raise_engine_error(engine)
                    return
                item = getter.result()
                if item is _STOP:
                    break
                yield item
            _raise_engine_error(engine)
        finally:
            if not engine.done():
                engine.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engine

    async def run(self) -> list[HarvestItem]:
        """Run to the end and return the failures (successes are only counted)."""
        return [item async for item in self if not item.ok]

    # --- engine ---------------------------------------------------------------

    async def _engine(self, results: asyncio.Queue[Any]) -> None:
        options = self.options
        if self.out is not None:
            self._journal = Journal(self.out)
            await self._journal.open(options.journal_view())
            await self._journal.describe_services(
                {
                    s.key: {"label": s.label, "title": s.title, "waveband": s.waveband}
                    for s in self._services
                }
            )
            # Hosts start at the rate the last run learned (not yet met by this client).
            learned = await self._journal.host_rates()
            rates = self.client.transport.start_rates
            rates.update({k: v for k, v in learned.items() if k not in rates})
        try:
            # Per-host queues: a worker only takes work for a host with room (_fair.py).
            searches: Any = self._fair(_search_host, options.searches)
            downloads: Any = self._fair(_record_host, options.downloads)
            async with asyncio.TaskGroup() as group:
                leftovers = None
                if self._journal is not None:
                    below = await self._journal.last_record_id()
                    leftovers = group.create_task(self._requeue(downloads, below))
                producer = group.create_task(self._produce(searches))
                searchers = [
                    group.create_task(self._search_worker(searches, downloads, results))
                    for _ in range(options.searches)
                ]
                downloaders = [
                    group.create_task(self._download_worker(downloads, results))
                    for _ in range(options.downloads if self.out is not None else 0)
                ]
                await producer
                for _ in searchers:
                    await searches.put(_STOP)
                await asyncio.gather(*searchers)
                if leftovers is not None:
                    await leftovers
                for _ in downloaders:
                    await downloads.put(_STOP)
            if self._journal is not None:
                await self._journal.set_finished(True)
        finally:
            if self._journal is not None:
                await asyncio.shield(self._close_journal(self._journal))
        await results.put(_STOP)

    def _fair(self, key: Callable[[Any], str | None], workers: int) -> FairQueue:
        transport = self.client.transport
        return FairQueue(
            key=key,
            room=lambda origin: transport.limiter(origin).policy.concurrency,
            ready_at=lambda origin: transport.limiter(origin).ready_at(),
            waiting=lambda origin: transport.limiter(origin).waiting,
            listen=lambda origin, poke: transport.limiter(origin).listen(poke),
            clock=transport.clock,
            per_host=max(256, 8 * workers),
        )

    async def _close_journal(self, journal: Journal) -> None:
        """Keep where each adaptive host rate ended, then close the journal."""
        try:
            limiters = self.client.transport.limiters
            await journal.set_host_rates(
                {o: lim.rate for o, lim in limiters.items() if lim.policy.adaptive}
            )
        finally:
            await journal.close()

    async def _produce(self, searches: asyncio.Queue[Any]) -> None:
        batch: list[Target] = []
        async for target in iter_targets(self._targets):
            batch.append(target)
            if len(batch) >= 256:
                await self._enqueue(batch, searches)
                batch = []
        if batch:
            await self._enqueue(batch, searches)

    async def _enqueue(self, batch: list[Target], searches: asyncio.Queue[Any]) -> None:
        done: set[tuple[str, str]] = set()
        if self._journal is not None:
            done = await self._journal.done_pairs([t.key for t in batch])
        for target in batch:
            for service in self._services:
                if (service.key, target.key) not in done:
                    await searches.put((service, target))

    async def _requeue(self, downloads: asyncio.Queue[Any], below: int) -> None:
        assert self._journal is not None
        after = 0
        while True:
            rows = await self._journal.unfinished(after, below, 500)
            if not rows:
                return
            for row in rows:
                await downloads.put(row)
            after = rows[-1].id

    async def _search_worker(
        self,
        searches: asyncio.Queue[Any],
        downloads: asyncio.Queue[Any],
        results: asyncio.Queue[Any],
    ) -> None:
        while (job := await searches.get()) is not _STOP:
            service, target = job
            item, new = await self._search(service, target)
            await results.put(item)
            if self.out is not None:
                for record in new:
                    await downloads.put(record)

    async def _search(
        self, service: _Service, target: Target
    ) -> tuple[HarvestItem, list[PendingRecord]]:
        totals = self.totals[service.label]
        position = target.position
        try:
            try:
                if position is None:
                    coord = await self.client.resolve(target.name or "")
                    position = (float(coord.icrs.ra.deg), float(coord.icrs.dec.deg))
                results = await service.search(position, self.options)
                chosen = self._choose(service, target, results, position)
                new: list[PendingRecord] = []
                if self._journal is not None:
                    new = await self._journal.search_done(
                        service.key, target.key, str(target), position, chosen, results.overflow
                    )
            except VOHarvestError:
                raise
            except Exception as exc:
                logger.exception("unexpected error searching %s for %s", service.label, target)
                raise UnexpectedError(f"{type(exc).__name__}: {exc}") from exc
        except VOHarvestError as error:
            totals.searches_failed += 1
            if self._journal is not None:
                await self._journal.search_failed(
                    service.key, target.key, str(target), position, str(error)
                )
            return HarvestItem("search", service.label, str(target), error=error), []
        totals.searches += 1
        totals.records += len(chosen)
        item = HarvestItem(
            "search",
            service.label,
            str(target),
            url=service.endpoint.access_url,
            records=len(chosen),
        )
        return item, new

    def _choose(
        self,
        service: _Service,
        target: Target,
        results: SIAResults,
        position: tuple[float, float],
    ) -> list[FoundRecord]:
        formats = self.options.kept_formats
        chosen: list[FoundRecord] = []
        seen: set[str] = set()
        cutout = self.options.cutout
        for record in results:
            url = record.getdataurl()
            links = record.datalink_url if record.is_datalink or cutout is not None else None
            if cutout is not None and service.cuts and not record.is_datalink:
                links = None  # the service cut it already: the file itself is the cutout
            cut_here = cutout is not None and service.cuts and not links
            if links:
                # Resolved by a download worker; a cutout depends on the target.
                url = links if cutout is None else f"{links}{_TARGET_MARK}{target.key}"
            elif not _keeps(record, formats):
                continue
            elif cutout is not None and not service.cuts and self.options.cutout_fallback == "skip":
                continue  # nothing to cut with, and full frames are not wanted
            if not url or url in seen:
                continue
            if not url.lower().startswith(("http://", "https://")):
                continue
            seen.add(url)
            name = record_filename(url, record.title, None if links else record.format)
            if links:
                name = name.rsplit("-", 1)[0]  # the stem of the files it leads to
            chosen.append(
                FoundRecord(
                    url=url,
                    path=f"{service.folder}/{target.folder}/{name}",
                    title=record.title,
                    format=None if links else record.format,
                    announced_size=None if links else record.filesize,
                    ra=record.ra,
                    dec=record.dec,
                    kind="datalink" if links else "file",
                    mode="cutout" if cut_here else "full",
                    region=f"BOX {position[0]!r} {position[1]!r} {cutout.extent[0]!r} "
                    f"{cutout.extent[1]!r}"
                    if cut_here and cutout
                    else None,
                )
            )
            if self.options.max_records and len(chosen) >= self.options.max_records:
                break
        return chosen

    async def _download_worker(
        self, downloads: asyncio.Queue[Any], results: asyncio.Queue[Any]
    ) -> None:
        while (record := await downloads.get()) is not _STOP:
            if record.kind == "datalink":
                for item in await self._resolve(record):
                    await results.put(item)
            else:
                await results.put(await self._download(record))

    def _counted_under(self, record: PendingRecord) -> tuple[str, HarvestTotals]:
        """The label and live totals of the service a journaled record came from."""
        service = self._by_key.get(record.service)
        label = service.label if service else record.service
        return label, self.totals.setdefault(label, HarvestTotals())

    async def _resolve(self, record: PendingRecord) -> list[HarvestItem]:
        """A DataLink record: fetch its document, journal what it leads to, fetch that."""
        assert self._journal is not None
        label, totals = self._counted_under(record)
        url = record.url.split(_TARGET_MARK, 1)[0]
        try:
            try:
                links = await self.client.datalinks(url)
                planned = self._plan(links, record)
            except VOHarvestError:
                raise
            except Exception as exc:
                logger.exception("unexpected error resolving %s", url)
                raise UnexpectedError(f"{type(exc).__name__}: {exc}") from exc
        except VOHarvestError as error:
            totals.downloads_failed += 1
            await self._journal.download_failed(record.id, str(error))
            return [HarvestItem("download", label, record.target_label, url=url, error=error)]
        folder = record.path.rsplit("/", 1)[0]
        stem = record.path.rsplit("/", 1)[-1]
        children = [
            FoundRecord(
                url=dataset.url,
                path=f"{folder}/{_child_name(stem, dataset)}",
                title=record.title,
                format=dataset.format,
                announced_size=None,
                ra=None,
                dec=None,
                via=dataset.via,
                mode=dataset.mode,
                region=dataset.region,
                preview=dataset.previews[0] if dataset.previews else None,
            )
            for dataset in planned
        ]
        note = None if children else "no cutout service for this dataset (cutout_fallback=skip)"
        new = await self._journal.resolved(record, children, note)
        if not children:
            totals.skipped += 1
            return [HarvestItem("download", label, record.target_label, url=url, skipped=True)]
        return [await self._download(child) for child in new]

    def _plan(self, links: DataLinks, record: PendingRecord) -> list[Dataset]:
        options = self.options
        planned = plan_datasets(
            links,
            cutout=options.cutout,
            position=record.centre,
            fallback=options.cutout_fallback,
        )
        formats = options.kept_formats
        if formats is None:
            return planned
        kept = [
            d for d in planned if d.format is None or any(same_format(d.format, f) for f in formats)
        ]
        if planned and not kept:
            offered = ", ".join(sorted({d.format or "unknown type" for d in planned}))
            raise DataLinkError(
                f"the DataLink document offers {offered}, none of {', '.join(formats)}",
                url=links.url,
            )
        return kept

    async def _download(self, record: PendingRecord) -> HarvestItem:
        assert self.out is not None and self._journal is not None
        label, totals = self._counted_under(record)
        try:
            try:
                relative = Path(record.path)
                folder = self.out / relative.parent
                existed = await asyncio.to_thread(_complete, folder, relative.name)
                path = await self.client.download(
                    record.url,
                    folder,
                    filename=relative.name,
                    keep_partial=True,
                    expected_format=record.format,
                )
                size = (await aiofiles.os.stat(path)).st_size
                await self._journal.download_done(record.id, size)
            except VOHarvestError:
                raise
            except Exception as exc:
                logger.exception("unexpected error downloading %s", record.url)
                raise UnexpectedError(f"{type(exc).__name__}: {exc}") from exc
        except VOHarvestError as error:
            totals.downloads_failed += 1
            await self._journal.download_failed(record.id, str(error))
            return HarvestItem("download", label, record.target_label, url=record.url, error=error)
        totals.downloads += 1
        totals.bytes += size
        totals.skipped += int(existed)
        return HarvestItem(
            "download",
            label,
            record.target_label,
            url=record.url,
            path=path,
            bytes=size,
            skipped=existed,
        )


# Marks a DataLink record's key as one target's (a cutout differs per target);
# a fragment, so it never reaches a server.
_TARGET_MARK = "#voharvest-target="


def _complete(folder: Path, name: str) -> bool:
    """Whether the file is under its final name already (a path check: in a thread)."""
    return inside(folder, name).exists()


def _child_name(stem: str, dataset: Dataset) -> str:
    """The file name of a dataset a DataLink record led to: the record's stem,
    ``_cutout`` for cutouts, a hash of the dataset's URL and its extension."""
    tag = "_cutout" if dataset.mode == "cutout" else ""
    extension = extension_for(dataset.format, dataset.url)
    return f"{stem[:80]}{tag}-{url_hash(dataset.url)}{extension}"


def _origin(url: str) -> str | None:
    try:
        return origin_of(url)
    except ParameterError:
        return None  # queued apart; its worker reports the bad URL


def _search_host(job: Any) -> str | None:
    """The origin a search job goes to (None for the stop mark)."""
    return _origin(job[0].endpoint.access_url) if isinstance(job, tuple) else None


def _record_host(record: Any) -> str | None:
    """The origin a download job goes to (None for the stop mark)."""
    return _origin(record.url) if isinstance(record, PendingRecord) else None


def _raise_engine_error(engine: asyncio.Task[None]) -> None:
    """Re-raise what stopped the engine; a lone error out of its task group unwrapped."""
    if not engine.done() or engine.cancelled():
        return
    error = engine.exception()
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if error is not None:
        raise error


def harvest(
    client: VOClient,
    services: Any,
    targets: Any,
    *,
    size: Any = 0.1,
    format: str | None = None,
    formats: tuple[str, ...] | None = None,
    max_records: int | None = None,
    download_to: str | Path | None = None,
    searches: int = 32,
    downloads: int = 16,
    cutout: Any = None,
    cutout_fallback: str = "full",
) -> Harvest:
    """Search every service around every target, and download what is chosen.

    ``services``: RegistryResource objects (from ``regsearch``), SIA service
    objects, or SIA v1 access URLs. ``targets``: an iterable or async iterable
    of names, (ra, dec) pairs, SkyCoords or :class:`Target`, or a
    ``pathlib.Path`` of a file with one per line; read lazily. With
    ``download_to``, records are downloaded there and a journal makes the
    harvest resumable; without it, only the searches run.

    Records whose access URL is a DataLink document are resolved to the
    dataset itself; with ``cutout`` (a :class:`~voharvest.Cutout` or a radius
    such as ``"3arcmin"``) a SODA cutout around each target is fetched instead
    of the full frame, and ``cutout_fallback`` (``full`` or ``skip``) says what
    to do with records that can't be cut (see :class:`HarvestOptions`).

    ``async for item in harvest(...)`` yields a :class:`HarvestItem` per search
    and per download, in completion order.
    """
    options = HarvestOptions(
        size=size,
        format=format,
        formats=formats,
        max_records=max_records,
        searches=searches,
        downloads=downloads,
        cutout=cutout,
        cutout_fallback=cutout_fallback,
    )
    return Harvest(client, services, targets, options, download_to=download_to)
