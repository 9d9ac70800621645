"""Harvests on a Dask cluster: partitions on workers, politeness for the cluster as a whole.

``pip install 'voharvest[dask]'``. A harvest's targets are split into
partitions; each partition runs the ordinary harvest (:func:`voharvest.harvest`)
on a worker, with a journal of its own, so a re-run after a lost worker or a
lost cluster finishes only what remains. Every host's rate, connection cap and
Retry-After pauses hold for the whole cluster: the scheduler keeps one ledger
per host that every request asks before it starts. Output goes to a shared
directory, or through fsspec to object storage (files staged locally, then
uploaded). See docs/dask.md::

    from distributed import Client
    from voharvest.dask import harvest_on_dask

    with Client("tcp://scheduler:8786") as dask_client:
        run = harvest_on_dask(dask_client, services, targets, download_to="/shared/m51",
                              size=0.2, format="image/fits")
        for item in run:
            ...
        print(run.complete, run.manifest)

This module is named after Dask and imports it (``distributed``, ``fsspec``);
inside voharvest every import of it is absolute, so it never hides the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voharvest._config import ClientConfig
from voharvest.dask._coordinator import PLUGIN_NAME, Coordinator
from voharvest.dask._driver import DaskHarvest, PartitionError, partition_of
from voharvest.dask._gate import ClusterGate, GateStats
from voharvest.dask._ledger import Ledger
from voharvest.dask._partition import PartitionResult, PartitionTask, run_partition
from voharvest.harvesting import HarvestOptions

__all__ = [
    "PLUGIN_NAME",
    "ClusterGate",
    "Coordinator",
    "DaskHarvest",
    "GateStats",
    "Ledger",
    "PartitionError",
    "PartitionResult",
    "PartitionTask",
    "harvest_on_dask",
    "partition_of",
    "run_partition",
]


def harvest_on_dask(
    client: Any,
    services: Any,
    targets: Any,
    *,
    download_to: str | Path,
    size: float = 0.1,
    search_format: str | None = None,
    keep_formats: tuple[str, ...] | None = None,
    max_records: int | None = None,
    searches: int = 32,
    downloads: int = 16,
    config: ClientConfig | None = None,
    partitions: int | None = None,
    sky_cell: float | None = 1.0,
    gate: bool = True,
    staging: str | Path | None = None,
    storage_options: dict[str, Any] | None = None,
    keep_items: bool = True,
    cutout: Any = None,
    cutout_fallback: str = "full",
    **deprecated: Any,  # format=, formats=: see HarvestOptions
) -> DaskHarvest:
    """The harvest of :func:`voharvest.harvest`, run in partitions on a ``distributed.Client``.

    - ``download_to``: a directory every worker sees (shared), or an fsspec
      URL (``s3://bucket/run``; ``storage_options`` go to fsspec).
    - ``staging``: where workers harvest before uploading, for a URL (default
      ``~/.cache/voharvest/staging``); given for a local directory too, it
      makes the workers stage and upload there as well.
    - ``partitions``: how many (default: twice the workers at the first run;
      a re-run reads it from ``<download_to>/voharvest-dask.json``).
    - ``sky_cell``: positions in one cell of this many degrees share a
      partition (``None``: spread by hash only).
    - ``config``: the client configuration each partition uses; its host
      policies hold for the cluster as a whole when ``gate`` is true.
    - ``keep_items``: send every item back (``False``: none; the manifests
      still list everything).
    - ``searches``, ``downloads``: workers of each partition's harvest.
    - ``search_format``, ``keep_formats``: the FORMAT sent with each search and
      the MIME types kept, as in :func:`voharvest.harvest` (``format`` and
      ``formats`` are their deprecated names).
    - ``cutout``, ``cutout_fallback``: a SODA cutout around each target instead
      of full frames, and what to do with records that can't be cut, as in
      :func:`voharvest.harvest` (docs/datalink.md). Like the search options,
      they are part of the plan: a re-run with others is refused.

    Iterate the result for the items (per partition, as partitions end), or
    call ``.run()`` for the failed ones.
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
    return DaskHarvest(
        client,
        services,
        targets,
        options,
        download_to=download_to,
        config=config,
        partitions=partitions,
        sky_cell=sky_cell,
        gate=gate,
        staging=staging,
        storage_options=storage_options,
        keep_items=keep_items,
    )
