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
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles.os

from .._config import origin_of
from .._downloader import Fetched, fetched
from .._exceptions import ParameterError, VOHarvestError
from ..services import RegistryResource, SIA2Service, SIAService
from ._choice import HarvestedService, choose, linked_records, plan, service_of
from ._fair import FairQueue
from ._journal import Journal, PendingRecord
from ._options import HarvestItem, HarvestOptions, HarvestTotals, UnexpectedError
from ._targets import Target, iter_targets

if TYPE_CHECKING:
    from ..client import VOClient

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


@contextlib.contextmanager
def _expected(what: str, *args: Any) -> Iterator[None]:
    """Let our own errors through; turn any other exception into an UnexpectedError,
    logged with its traceback (it is a bug: ``what`` says where)."""
    try:
        yield
    except VOHarvestError:
        raise
    except Exception as exc:
        logger.exception("unexpected error " + what, *args)
        raise UnexpectedError(f"{type(exc).__name__}: {exc}") from exc


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
        unique: dict[str, HarvestedService] = {}
        for value in services:
            service = service_of(client, value)
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
            # Services harvested before keep their folders (an older version may have
            # named them otherwise).
            folders = await self._journal.service_folders()
            self._services = [
                dataclasses.replace(s, folder=folders.get(s.key, s.folder)) for s in self._services
            ]
            self._by_key = {s.key: s for s in self._services}
            await self._journal.describe_services(
                {
                    s.key: {
                        "label": s.label,
                        "title": s.title,
                        "waveband": s.waveband,
                        "folder": s.folder,
                    }
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
        self, service: HarvestedService, target: Target
    ) -> tuple[HarvestItem, list[PendingRecord]]:
        totals = self.totals[service.label]
        position = target.position
        try:
            with _expected("searching %s for %s", service.label, target):
                if position is None:
                    coord = await self.client.resolve(target.name or "")
                    position = (float(coord.icrs.ra.deg), float(coord.icrs.dec.deg))
                results = await service.search(position, self.options)
                chosen = choose(self.options, service, target, results, position)
                new: list[PendingRecord] = []
                if self._journal is not None:
                    new = await self._journal.search_done(
                        service.key, target.key, str(target), position, chosen, results.overflow
                    )
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

    async def _download_worker(
        self, downloads: asyncio.Queue[Any], results: asyncio.Queue[Any]
    ) -> None:
        # A file's journal entry (and its item) is written while the worker fetches the
        # next file, one entry at a time: the host's slot does not wait for a commit.
        entry: asyncio.Future[None] | None = None
        try:
            while (record := await downloads.get()) is not _STOP:
                if record.kind == "datalink":
                    for item in await self._resolve(record):
                        await results.put(item)
                    continue
                outcome = await self._fetch_file(record)
                if entry is not None:
                    await entry
                entry = asyncio.ensure_future(self._report_file(record, outcome, results))
            if entry is not None:
                await entry
        finally:
            if entry is not None and not entry.done():
                entry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await entry

    def _counted_under(self, record: PendingRecord) -> tuple[str, HarvestTotals]:
        """The label and live totals of the service a journaled record came from."""
        service = self._by_key.get(record.service)
        label = service.label if service else record.service
        return label, self.totals.setdefault(label, HarvestTotals())

    async def _resolve(self, record: PendingRecord) -> list[HarvestItem]:
        """A DataLink record: fetch its document, journal what it leads to, fetch that."""
        assert self._journal is not None
        label, totals = self._counted_under(record)
        url = record.url
        try:
            with _expected("resolving %s", url):
                links = await self.client.datalinks(url)
                children = linked_records(record, plan(self.options, links, record))
        except VOHarvestError as error:
            totals.downloads_failed += 1
            await self._journal.download_failed(record.id, str(error))
            return [HarvestItem("download", label, record.target_label, url=url, error=error)]
        note = None if children else "no cutout service for this dataset (cutout_fallback=skip)"
        new = await self._journal.resolved(record, children, note)
        if not children:
            totals.nothing_to_cut += 1
            item = HarvestItem("download", label, record.target_label, url=url, nothing_to_cut=True)
            return [item]
        return [await self._download(child) for child in new]

    async def _download(self, record: PendingRecord) -> HarvestItem:
        """Fetch ``record``'s file and journal it; its item."""
        return await self._journaled(record, await self._fetch_file(record))

    async def _report_file(
        self,
        record: PendingRecord,
        outcome: tuple[Path, int, bool] | VOHarvestError,
        results: asyncio.Queue[Any],
    ) -> None:
        await results.put(await self._journaled(record, outcome))

    async def _fetch_file(self, record: PendingRecord) -> tuple[Path, int, bool] | VOHarvestError:
        """``record``'s file fetched: (path, size, whether it was on disk already), or the error."""
        assert self.out is not None
        try:
            with _expected("downloading %s", record.url):
                folder, _, name = record.path.rpartition("/")
                # The download says what it did (file there already, size): no hops of ours.
                report = Fetched()
                fetched.set(report)
                path = await self.client.download(
                    record.url,
                    self.out / folder,
                    filename=name,
                    keep_partial=True,
                    expected_format=record.format,
                )
                if report.path == path:
                    return path, report.size, report.existed
                # (not said: a file of a DataLink document's choosing)
                return path, (await aiofiles.os.stat(path)).st_size, False
        except VOHarvestError as error:
            return error

    async def _journaled(
        self, record: PendingRecord, outcome: tuple[Path, int, bool] | VOHarvestError
    ) -> HarvestItem:
        """The journal told what became of ``record``'s file; its item."""
        assert self._journal is not None
        label, totals = self._counted_under(record)
        if not isinstance(outcome, VOHarvestError):
            path, size, existed = outcome
            try:
                with _expected("journaling %s", record.url):
                    await self._journal.download_done(record.id, size)
            except VOHarvestError as error:
                outcome = error
            else:
                totals.downloads += 1
                totals.bytes += size
                totals.found_on_disk += int(existed)
                return HarvestItem(
                    "download",
                    label,
                    record.target_label,
                    url=record.url,
                    path=path,
                    bytes=size,
                    found_on_disk=existed,
                )
        totals.downloads_failed += 1
        await self._journal.download_failed(record.id, str(outcome))
        return HarvestItem("download", label, record.target_label, url=record.url, error=outcome)


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
    search_format: str | None = None,
    keep_formats: tuple[str, ...] | None = None,
    max_records: int | None = None,
    download_to: str | Path | None = None,
    searches: int = 32,
    downloads: int = 16,
    cutout: Any = None,
    cutout_fallback: str = "full",
    **deprecated: Any,  # format=, formats=: see HarvestOptions
) -> Harvest:
    """Search every service around every target, and download what is chosen.

    ``services``: RegistryResource objects (from ``regsearch``), SIA service
    objects, or SIA v1 access URLs. ``targets``: an iterable or async iterable
    of names, (ra, dec) pairs, SkyCoords or :class:`Target`, or a
    ``pathlib.Path`` of a file with one per line; read lazily. With
    ``download_to``, records are downloaded there and a journal makes the
    harvest resumable; without it, only the searches run.

    ``search_format`` is the FORMAT sent with each search, ``keep_formats`` the
    MIME types of the records kept (see :class:`HarvestOptions`; ``format`` and
    ``formats`` are their deprecated names). Records whose access URL is a
    DataLink document are resolved to the dataset itself; with ``cutout`` (a
    :class:`~voharvest.Cutout` or a radius such as ``"3arcmin"``) a SODA cutout
    around each target is fetched instead of the full frame, and
    ``cutout_fallback`` (``full`` or ``skip``) says what to do with records
    that can't be cut.

    ``async for item in harvest(...)`` yields a :class:`HarvestItem` per search
    and per download, in completion order.
    """
    options = HarvestOptions(
        size=size,
        search_format=search_format,
        keep_formats=keep_formats,
        max_records=max_records,
        searches=searches,
        downloads=downloads,
        cutout=cutout,
        cutout_fallback=cutout_fallback,
        **deprecated,
    )
    return Harvest(client, services, targets, options, download_to=download_to)
