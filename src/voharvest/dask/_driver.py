"""The driver: split the targets, submit one task per partition, gather items and manifests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voharvest._checks import count
from voharvest._config import ClientConfig
from voharvest._exceptions import ParameterError, VOHarvestError
from voharvest.dask._coordinator import PLUGIN_NAME, Coordinator
from voharvest.dask._partition import PartitionResult, PartitionTask, ServiceSpec, run_partition
from voharvest.dask._storage import PLAN_NAME, Store, target_to_json
from voharvest.harvesting import HarvestItem, HarvestOptions, Target, iter_targets
from voharvest.harvesting.manifest import MANIFEST_COLUMNS, VOTableRows
from voharvest.services import RegistryResource, SIA2Service, SIAService

__all__ = ["DaskHarvest", "PartitionError", "partition_of"]

logger = logging.getLogger("voharvest.dask")

_PLAN_VERSION = 1


class PartitionError(VOHarvestError):
    """A partition's task failed as a whole (its worker died too often, or a bug); re-run it."""


def partition_of(target: Target, count: int, sky_cell: float | None) -> int:
    """The partition of a target: stable across runs, machines and Python versions.

    With ``sky_cell`` (degrees), positions in the same cell of a coarse grid
    go together, so that neighbours that share images are harvested by one
    journal (which fetches each URL once); names, and every target without
    ``sky_cell``, are spread by a hash of their key.
    """
    key = target.key
    if sky_cell and target.ra is not None and target.dec is not None:
        band = math.floor((target.dec + 90.0) / sky_cell)
        centre = -90.0 + (band + 0.5) * sky_cell
        width = sky_cell / max(math.cos(math.radians(centre)), 1e-3)
        key = f"cell:{sky_cell}:{band}:{math.floor(target.ra / width)}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def _service_spec(value: Any) -> ServiceSpec:
    if isinstance(value, RegistryResource):
        return ("resource", dataclasses.replace(value, client=None))
    if isinstance(value, SIA2Service):
        return ("sia2", value.access_url)
    if isinstance(value, SIAService):
        return ("sia1-cuts" if value.cuts else "sia1", value.access_url)
    if isinstance(value, str):
        return ("sia1", value)
    raise ParameterError(f"can't harvest from {value!r}: give SIA services or access URLs")


class DaskHarvest:
    """A harvest whose partitions run on a Dask cluster; iterate it for the items.

    See :func:`voharvest.dask.harvest_on_dask` for the parameters. Iterating
    yields every partition's :class:`~voharvest.harvesting.HarvestItem`\\ s
    as each partition ends (partitions in completion order); afterwards
    ``partitions`` holds a :class:`PartitionResult` per partition,
    ``manifest`` the combined manifest's path and ``ledger`` what the
    cluster's politeness ledger counted per host.
    """

    def __init__(
        self,
        client: Any,
        services: Any,
        targets: Any,
        options: HarvestOptions,
        *,
        download_to: str | Path,
        config: ClientConfig | None = None,
        partitions: int | None = None,
        sky_cell: float | None = 1.0,
        gate: bool = True,
        staging: str | Path | None = None,
        storage_options: dict[str, Any] | None = None,
        keep_items: bool = True,
        lease_timeout: float = 60.0,
    ) -> None:
        if partitions is not None:
            count("partitions", partitions)
        if sky_cell is not None and not (0 < sky_cell <= 180):
            raise ParameterError(f"sky_cell: expected degrees in (0, 180], got {sky_cell!r}")
        if isinstance(services, str | RegistryResource | SIAService | SIA2Service):
            services = [services]
        specs = tuple(dict.fromkeys(_service_spec(s) for s in services))
        if not specs:
            raise ParameterError("no services to harvest")
        self.client = client
        self.options = options
        self.config = config or ClientConfig()
        self.config.credentials.check_portable()
        self.store = Store(download_to, storage_options)
        if staging is None and not self.store.is_local:
            staging = Path.home() / ".cache" / "voharvest" / "staging"
        self.staging = str(staging) if staging is not None else None
        self._services = specs
        self._targets = targets
        self._requested = partitions
        self.sky_cell = sky_cell
        self.gate = gate
        self.keep_items = keep_items
        self.lease_timeout = lease_timeout
        self.count = 0
        self.partitions: list[PartitionResult] = []
        self.manifest: str | None = None
        self.ledger: dict[str, dict[str, Any]] = {}
        self._started = False

    # --- the plan -------------------------------------------------------------

    def _plan(self) -> int:
        """The partition count: from an earlier run's plan, else as asked, else 2 per worker."""
        plan = self.store.read_json(PLAN_NAME)
        view = self.options.journal_view()
        if plan is not None:
            count = int(plan["partitions"])
            if self._requested is not None and self._requested != count:
                raise ParameterError(
                    f"{self.store.url} was harvested in {count} partitions; "
                    f"a re-run must use the same number (asked: {self._requested})"
                )
            if plan.get("sky_cell") != self.sky_cell:
                raise ParameterError(
                    f"{self.store.url} was split with sky_cell={plan.get('sky_cell')}, "
                    f"not {self.sky_cell}"
                )
            if not self.options.resumes(plan.get("options")):
                raise ParameterError(
                    f"{self.store.url} was harvested with other options: {plan.get('options')}"
                )
            return count
        if self._requested is not None:
            count = self._requested
        else:
            workers = len(self.client.scheduler_info().get("workers", {})) or 1
            count = 2 * workers
        plan = {
            "version": _PLAN_VERSION,
            "partitions": count,
            "sky_cell": self.sky_cell,
            "options": view,
        }
        self.store.fs.makedirs(self.store.root, exist_ok=True)
        self.store.write_text(self.store.path(PLAN_NAME), json.dumps(plan, indent=1))
        return count

    def _split_targets(self, count: int) -> list[int]:
        """Write each partition's targets file; how many targets each got."""
        store = self.store
        fs = store.fs
        sizes = [0] * count
        handles = []
        for index in range(count):
            fs.makedirs(store.partition(index), exist_ok=True)
            handles.append(fs.open(store.partition(index, "targets.jsonl.part"), "w"))
        try:

            async def read() -> None:
                async for target in iter_targets(self._targets):
                    index = partition_of(target, count, self.sky_cell)
                    handles[index].write(target_to_json(target) + "\n")
                    sizes[index] += 1

            # In a thread of its own: the caller may be inside an event loop (Jupyter).
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, read()).result()
        finally:
            for handle in handles:
                handle.close()
        for index in range(count):
            final = store.partition(index, "targets.jsonl")
            fs.mv(final + ".part", final)
        return sizes

    # --- the run --------------------------------------------------------------

    def __iter__(self) -> Iterator[HarvestItem]:
        if self._started:
            raise ParameterError("a DaskHarvest runs once; make a new one to run again")
        self._started = True
        from distributed import as_completed

        self.count = count = self._plan()
        self._split_targets(count)
        if self.gate:
            self.client.register_plugin(
                Coordinator(lease_timeout=self.lease_timeout), name=PLUGIN_NAME
            )
        token = uuid.uuid4().hex[:8]
        # Spread the partitions over the workers there are now (a hint: a partition
        # whose worker is lost, or busy, may still run on another).
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        futures = []
        for index in range(count):
            task = PartitionTask(
                index=index,
                store=self.store,
                services=self._services,
                options=self.options,
                config=dataclasses.replace(self.config, gate=None),
                staging=self.staging,
                gate=self.gate,
                keep_items=self.keep_items,
            )
            key = f"voharvest-partition-{index:04d}-{token}"
            placement: dict[str, Any] = {}
            if workers:
                placement = {
                    "workers": [workers[index % len(workers)]],
                    "allow_other_workers": True,
                }
            futures.append(
                self.client.submit(run_partition, task, key=key, pure=False, **placement)
            )
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                index = futures.index(future)
                try:
                    result: PartitionResult = future.result()
                except VOHarvestError as error:
                    result = PartitionResult(index, error=error)
                except Exception as exc:
                    lost = " (the cluster's scheduler is lost)" if self._scheduler_lost(exc) else ""
                    failure = PartitionError(
                        f"partition {index} failed{lost}: {type(exc).__name__}: {exc}"
                    )
                    failure.__cause__ = exc
                    result = PartitionResult(index, error=failure)
                self.partitions.append(result)
                yield from result.items
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        if self.gate:
            self.ledger = self._ledger_report()
        self.manifest = self._combine(count)

    def _scheduler_lost(self, exc: BaseException) -> bool:
        """Whether the client has lost its scheduler (it is reconnecting, or gave up):
        a partition's error then says so, whatever connection broke first. After a
        broken connection the client is given a moment to notice a dead scheduler."""
        patience = _NOTICE_SECONDS if _is_broken_connection(exc) else 0.0
        deadline = time.monotonic() + patience
        while True:
            if str(getattr(self.client, "status", "running")) not in ("running", "newly-created"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _ledger_report(self) -> dict[str, dict[str, Any]]:
        """The ledger's counters; none if the scheduler is gone (the partitions say so)."""
        if self.client.status != "running":
            return {}
        try:
            report: dict[str, dict[str, Any]] = self.client.run_on_scheduler(_ledger_report)
        except (OSError, concurrent.futures.CancelledError, TimeoutError) as exc:
            logger.warning("voharvest: no ledger report from the scheduler: %s", exc)
            return {}
        return report

    def run(self) -> list[HarvestItem]:
        """Run to the end; the failed items (a failed partition raises nothing: see ``failed``)."""
        return [item for item in self if not item.ok]

    @property
    def failed(self) -> list[PartitionResult]:
        """The partitions whose task failed as a whole (re-run to finish them)."""
        return [p for p in self.partitions if p.error is not None]

    @property
    def complete(self) -> bool:
        """Every partition ran to its end with nothing failed or pending."""
        return len(self.partitions) == self.count and all(
            p.error is None and p.complete for p in self.partitions
        )

    # --- the combined manifest ------------------------------------------------

    def _combine(self, count: int) -> str:
        """``<root>/manifest.csv`` and ``manifest.xml`` (VOTable): every partition's
        manifest, a ``partition`` column first, paths relative to the root."""
        store = self.store
        path_at = MANIFEST_COLUMNS.index("path")
        target = store.path("manifest.csv")
        partial = target + ".part"
        vot_target = store.path("manifest.xml")
        vot_partial = vot_target + ".part"
        with (
            store.fs.open(partial, "w", encoding="utf-8", newline="") as out,
            store.fs.open(vot_partial, "w", encoding="utf-8") as vot_out,
            VOTableRows(vot_out, ("partition", *MANIFEST_COLUMNS)) as votable,
        ):
            writer = csv.writer(out)
            writer.writerow(("partition", *MANIFEST_COLUMNS))
            for index in range(count):
                source = store.partition(index, "manifest.csv")
                if not store.fs.exists(source):
                    continue
                with store.fs.open(source, "r", encoding="utf-8", newline="") as handle:
                    reader = csv.reader(handle)
                    # By name: a partition's manifest from an older version has fewer
                    # columns (no mode, region, via, preview); theirs stay empty.
                    header = next(reader, None) or []
                    at = [header.index(c) if c in header else None for c in MANIFEST_COLUMNS]
                    for found in reader:
                        row = [found[i] if i is not None and i < len(found) else "" for i in at]
                        if row[path_at]:
                            row[path_at] = f"partitions/{index:04d}/{row[path_at]}"
                        writer.writerow((index, *row))
                        votable.write((index, *row))
        store.fs.mv(partial, target)
        store.fs.mv(vot_partial, vot_target)
        return target


#: Seconds a client is given to notice its scheduler is gone after a broken connection.
_NOTICE_SECONDS = 2.0


def _is_broken_connection(exc: BaseException) -> bool:
    """A connection that broke (distributed's CommClosedError is an OSError)."""
    return isinstance(exc, OSError | EOFError)


def _ledger_report(dask_scheduler: Any) -> dict[str, dict[str, Any]]:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    ledger = getattr(plugin, "ledger", None)
    return ledger.report() if ledger is not None else {}
