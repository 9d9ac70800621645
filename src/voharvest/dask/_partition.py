"""One partition on one worker: the ordinary harvest, with the cluster's gate and its own journal.

:func:`run_partition` is what the driver submits: a plain function, run in a
worker's task thread, that starts an event loop of its own (``asyncio.run``)
so that the harvest's parsing never holds up the worker's own loop. It also
runs outside Dask (then without a gate), which is how the storage paths are
tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voharvest._config import ClientConfig
from voharvest._exceptions import StorageError, VOHarvestError
from voharvest.client import VOClient
from voharvest.dask._gate import ClusterGate, GateStats
from voharvest.dask._storage import Store, UploadLog, snapshot_journal
from voharvest.harvesting import (
    JOURNAL_NAME,
    Harvest,
    HarvestItem,
    HarvestOptions,
    HarvestTotals,
    UnexpectedError,
)
from voharvest.harvesting.manifest import MANIFEST_COLUMNS, manifest_rows, status, write_manifest
from voharvest.services import RegistryResource

__all__ = ["PartitionResult", "PartitionTask", "ServiceSpec", "run_partition"]

logger = logging.getLogger("voharvest.dask")

#: ("resource", RegistryResource without its client) or ("sia1" | "sia1-cuts" | "sia2",
#: access URL); "sia1-cuts" is an SIA 1.0 service of the Cutout type.
ServiceSpec = tuple[str, Any]

_UPLOADS_IN_FLIGHT = 8


@dataclass(frozen=True)
class PartitionTask:
    """Everything a worker needs to run one partition (pickled to it)."""

    index: int
    store: Store
    services: tuple[ServiceSpec, ...]
    options: HarvestOptions
    config: ClientConfig
    staging: str | None = None
    gate: bool = True
    keep_items: bool = True


@dataclass
class PartitionResult:
    """What one partition run did (``items`` only if the harvest keeps them)."""

    index: int
    worker: str = ""
    items: list[HarvestItem] = field(default_factory=list)
    failures: int = 0
    totals: dict[str, HarvestTotals] = field(default_factory=dict)
    complete: bool = False
    uploaded: int = 0
    lost: int = 0
    seconds: float = 0.0
    gate: GateStats | None = None
    error: VOHarvestError | None = None


def _services(client: VOClient, specs: tuple[ServiceSpec, ...]) -> list[Any]:
    services: list[Any] = []
    for kind, value in specs:
        if kind == "resource":
            services.append(RegistryResource.bind(value, client))
        else:
            version = 2 if kind == "sia2" else 1
            services.append(client.sia_service(value, version=version, cuts=kind == "sia1-cuts"))
    return services


def run_partition(task: PartitionTask) -> PartitionResult:
    """Run one partition to its end (a Dask task; also callable on its own, without a gate)."""
    worker: Any = None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a Dask worker
        worker = None
    return asyncio.run(_run(task, worker))


async def _run(task: PartitionTask, worker: Any) -> PartitionResult:
    started = time.monotonic()
    store = task.store
    staged = task.staging is not None
    if staged:
        assert task.staging is not None
        folder = Path(task.staging) / store.digest / f"{task.index:04d}"
    else:
        folder = Path(store.partition(task.index))
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    result = PartitionResult(task.index, worker=str(getattr(worker, "address", "")))
    uploads: UploadLog | None = None
    if staged:
        log, restored = await asyncio.to_thread(_prepare_staging, store, task.index, folder)
        result.uploaded, result.lost = await asyncio.to_thread(
            _reconcile, store, task.index, folder, log, restored
        )
        uploads = log
    async with _gate(task, worker) as gate:
        config = dataclasses.replace(task.config, gate=gate, parse_workers=0)
        async with VOClient(config) as client:
            run = Harvest(
                client,
                _services(client, task.services),
                store.targets(task.index),
                task.options,
                download_to=folder,
            )
            await _consume(run, task, store, folder, uploads, result)
            result.totals = dict(run.totals)
        result.gate = gate.stats if gate is not None else None
    result.complete = (await asyncio.to_thread(status, folder)).complete
    await asyncio.to_thread(write_manifest, folder)
    if staged:
        await asyncio.to_thread(_publish, store, task.index, folder)
    result.seconds = time.monotonic() - started
    return result


@contextlib.asynccontextmanager
async def _gate(task: PartitionTask, worker: Any) -> AsyncIterator[ClusterGate | None]:
    if not task.gate or worker is None:
        yield None
        return
    gate = ClusterGate(
        worker.scheduler.address,
        worker=str(worker.address),
        connection_args=getattr(worker, "connection_args", None),
    )
    async with gate:
        yield gate


async def _consume(
    run: Harvest,
    task: PartitionTask,
    store: Store,
    folder: Path,
    uploads: UploadLog | None,
    result: PartitionResult,
) -> None:
    places = asyncio.Semaphore(_UPLOADS_IN_FLIGHT)

    def keep(item: HarvestItem) -> None:
        if not item.ok:
            result.failures += 1
        if task.keep_items:
            result.items.append(item)

    async def upload(item: HarvestItem) -> None:
        assert uploads is not None and item.path is not None
        async with places:
            try:
                relative = item.path.relative_to(folder).as_posix()
                destination = store.partition(task.index, relative)
                if relative not in uploads.done:
                    size = await asyncio.to_thread(_upload_one, store, item.path, destination)
                    uploads.add(relative, size)
                    result.uploaded += 1
                await asyncio.to_thread(item.path.unlink, missing_ok=True)
                keep(dataclasses.replace(item, path=Path(destination)))
            except VOHarvestError as error:
                keep(dataclasses.replace(item, path=None, error=error))
            except Exception as exc:
                logger.exception("unexpected error uploading %s", item.path)
                failure = UnexpectedError(f"{type(exc).__name__}: {exc}")
                keep(dataclasses.replace(item, path=None, error=failure))

    async with asyncio.TaskGroup() as group:
        async for item in run:
            if uploads is not None and item.kind == "download" and item.ok and item.path:
                group.create_task(upload(item))
            else:
                keep(item)


def _upload_one(store: Store, local: Path, destination: str) -> int:
    size = local.stat().st_size
    if store.size(destination) != size:
        store.upload(local, destination)
    return size


def _prepare_staging(store: Store, index: int, folder: Path) -> tuple[UploadLog, bool]:
    """Bring back the partition's journal from the store if this staging folder lost it;
    (the upload log, whether the journal was restored)."""
    journal = folder / JOURNAL_NAME
    restored = False
    if not journal.exists() and store.download(store.partition(index, JOURNAL_NAME), journal):
        logger.info("partition %d: journal restored from %s", index, store.url)
        restored = True
    return UploadLog(folder), restored


def _reconcile(
    store: Store, index: int, folder: Path, uploads: UploadLog, restored: bool
) -> tuple[int, int]:
    """Make the journal and the store agree before the partition's harvest runs.

    - A file the journal calls done, here but not uploaded (a run killed
      between its rename and its upload): uploaded now.
    - A file the journal calls done, neither here nor in the store (its
      staging folder went with its machine): lost — set pending again, so the
      harvest fetches it again.
    - With a journal restored from the store's copy (older than the files
      uploaded after it): a file it calls pending but the store holds under
      its final name (uploads are atomic renames) is done; not fetched again.

    Returns (uploaded now, lost and to be fetched again).
    """
    journal = folder / JOURNAL_NAME
    if not journal.exists() or not _has_records(journal):
        return 0, 0  # none, or one whose run died before writing its tables
    from voharvest.harvesting import mark_records, open_readonly

    uploaded = 0
    state_at = MANIFEST_COLUMNS.index("state")
    path_at = MANIFEST_COLUMNS.index("path")
    seen: set[str] = set()
    found: dict[str, int] = {}
    lost: list[str] = []
    db = open_readonly(folder)
    try:
        for row in manifest_rows(db):
            relative = str(row[path_at])
            if not relative or relative in seen:
                continue
            seen.add(relative)
            destination = store.partition(index, relative)
            if row[state_at] != "done":
                if restored and row[state_at] in ("pending", "failed"):
                    size = store.size(destination)
                    if size is not None:
                        found[relative] = size
                        uploads.add(relative, size)
                continue
            if relative in uploads.done:
                continue
            local = folder / relative
            if local.exists():
                uploads.add(relative, _upload_one(store, local, destination))
                local.unlink()
                uploaded += 1
            elif (size := store.size(destination)) is not None:
                uploads.add(relative, size)
            else:
                lost.append(relative)
    finally:
        db.close()
    if found or lost:
        mark_records(folder, done=found, pending=lost)
    return uploaded, len(lost)


def _has_records(journal: Path) -> bool:
    """Whether a journal file has its tables (a run killed at once leaves an empty file)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
            ).fetchone()
    except sqlite3.Error:
        return False
    return found is not None


def _publish(store: Store, index: int, folder: Path) -> None:
    """Upload the partition's manifest and a copy of its journal."""
    try:
        for name in ("manifest.csv", "manifest.xml"):
            store.upload(folder / name, store.partition(index, name))
        copy = folder / (JOURNAL_NAME + ".copy")
        if snapshot_journal(folder, copy):
            store.upload(copy, store.partition(index, JOURNAL_NAME))
            copy.unlink()
    except OSError as exc:
        raise StorageError(f"can't publish partition {index} to {store.url}: {exc}") from exc
