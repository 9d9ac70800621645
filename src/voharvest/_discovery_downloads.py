"""Downloads of what a global discovery found: each dataset once, in its target's folder."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import ParameterError, VOHarvestError

if TYPE_CHECKING:
    from ._discovery_options import DiscoveryResult
    from .client import VOClient
    from .protocol.discovery import Dataset, Target

__all__ = ["download", "target_folder"]

logger = logging.getLogger("voharvest.discovery")


def target_folder(target: Target) -> str:
    """A safe, stable folder name for a target's files."""
    from ._files import safe_filename

    if target.label:
        return safe_filename(target.label, default="target")
    return f"{target.ra:09.5f}{target.dec:+09.5f}"


async def download(
    client: VOClient,
    result: DiscoveryResult,
    directory: str | os.PathLike[str],
    *,
    formats: Sequence[str] | None = None,
    workers: int = 8,
) -> list[tuple[Dataset, Path | VOHarvestError]]:
    """Download what a discovery found: each dataset once, into the folder of
    its first target (``directory/<target>/``), with ``client.download``
    (DataLink documents resolved to their dataset, ``.part`` kept on failure).

    A file already there is not fetched again, and a ``.part`` is resumed: run
    again, only what is missing is fetched. ``formats``: only datasets of these
    MIME types (the parameters after ``;`` ignored; DataLink records are kept,
    their dataset's type is not known before). Returns (dataset, path or error)
    pairs, in the result's order.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers: expected a positive integer, not {workers!r}")
    wanted = {f.split(";")[0].strip().lower() for f in formats} if formats else None
    targets = {t.id: t for t in result.targets}
    chosen = [
        d
        for d in result.datasets
        if wanted is None
        or (d.format or "").split(";")[0].strip().lower() in wanted
        or "datalink" in (d.format or "").lower()
    ]
    outcome: dict[int, Path | VOHarvestError] = {}
    pending = iter(enumerate(chosen))

    async def worker() -> None:
        for index, dataset in pending:
            folder = Path(directory) / target_folder(targets[dataset.targets[0]])
            try:
                outcome[index] = await client.download(dataset.record, folder, keep_partial=True)
            except VOHarvestError as exc:
                logger.warning("download of %s failed: %s", dataset.access_url, exc)
                outcome[index] = exc

    async with asyncio.TaskGroup() as group:
        for _ in range(min(workers, len(chosen))):
            group.create_task(worker())
    return [(dataset, outcome[i]) for i, dataset in enumerate(chosen)]
