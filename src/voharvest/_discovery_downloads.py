"""Downloads of what a global discovery found: each dataset once, in its target's folder,
each outcome kept in the discovery journal; and the manifest of it all.

:func:`download` fetches; given the discovery's journal
(:class:`~voharvest._discovery_journal.DiscoveryJournal`) it records each
file done (path, size) or failed as it ends, and, run again, takes a file the
journal has done and the disk still holds (same size) without asking anyone
(not even a DataLink document). :func:`write_manifest` writes what was found
and fetched: ``manifest.xml`` (a VOTable, a row per dataset with its origins)
and ``provenance.json`` (a record per service), each under a temporary name
first and renamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ParameterError, VOHarvestError
from .harvesting.manifest import Column, VOTableRows

if TYPE_CHECKING:
    from ._discovery_journal import DiscoveryJournal
    from ._discovery_options import DiscoveryResult
    from .client import VOClient
    from .protocol.discovery import Dataset, Target

__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "PROVENANCE_NAME",
    "download",
    "manifest_rows",
    "target_folder",
    "write_manifest",
]

#: The discovery manifest's columns (a row per dataset): ``targets`` and
#: ``target_ids`` are ``; ``-separated, ``services`` ``ivoid#kind`` separated by
#: spaces; ``state``: ``done``, ``failed`` or ``not fetched`` (left out by ``formats``).
#: The discovery manifest's columns, as VOTable FIELDs.
MANIFEST_FIELDS = (
    Column("access_url", ucd="meta.ref.url", description="Where the dataset is fetched from"),
    Column("title", ucd="meta.title", description="The dataset's title, from its service"),
    Column("format", ucd="meta.code.mime", description="The dataset's media type"),
    Column("publisher_did", ucd="meta.ref.ivoid", description="The publisher's dataset id"),
    Column("ra", "double", "deg", "pos.eq.ra", "Right ascension its service announced"),
    Column("dec", "double", "deg", "pos.eq.dec", "Declination its service announced"),
    Column("target_ids", ucd="meta.id", description="The targets it was found for ('; ')"),
    Column("targets", ucd="meta.id", description="Those targets' labels ('; ')"),
    Column("services", ucd="meta.ref.ivoid", description="ivoid#kind of each service found it"),
    Column("state", ucd="meta.code.status", description="done, failed or not fetched"),
    Column("path", ucd="meta.ref;meta.file", description="The file written, if fetched"),
    Column("bytes", "long", "byte", "phys.size;meta.file", "Bytes written"),
    Column("error", ucd="meta.note", description="Why the file is not there"),
)
MANIFEST_COLUMNS = tuple(column.name for column in MANIFEST_FIELDS)
_DESCRIPTION = "The datasets a discovery found: a row per dataset, with what became of it"
MANIFEST_NAME = "manifest.xml"
PROVENANCE_NAME = "provenance.json"

Outcome = Path | VOHarvestError

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
    journal: DiscoveryJournal | None = None,
) -> list[tuple[Dataset, Outcome]]:
    """Download what a discovery found: each dataset once, into the folder of
    its first target (``directory/<target>/``), with ``client.download``
    (DataLink documents resolved to their dataset, ``.part`` kept on failure).

    A file already there is not fetched again, and a ``.part`` is resumed: run
    again, only what is missing is fetched. ``formats``: only datasets of these
    MIME types (the parameters after ``;`` ignored; DataLink records are kept,
    their dataset's type is not known before). Returns (dataset, path or error)
    pairs, in the result's order.

    ``journal``: an open discovery journal. Each outcome is kept there as it
    ends (``done`` with path and size, or ``failed``); a dataset it has done
    whose file is still there, of that size, is taken as it is, asking
    nothing (``journal.files_kept`` counts them).
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
    names = _distinct_names(chosen, {i: target_folder(t) for i, t in targets.items()})
    outcome: dict[int, Outcome] = {}
    pending = iter(enumerate(chosen))

    async def worker() -> None:
        for index, dataset in pending:
            if journal is not None:
                kept = await _kept(journal, dataset.access_url)
                if kept is not None:
                    journal.files_kept += 1
                    outcome[index] = kept
                    continue
            folder = Path(directory) / target_folder(targets[dataset.targets[0]])
            try:
                path = await client.download(
                    dataset.record, folder, filename=names.get(index), keep_partial=True
                )
            except VOHarvestError as exc:
                logger.warning("download of %s failed: %s", dataset.access_url, exc)
                outcome[index] = exc
                if journal is not None:
                    await journal.set_file(dataset.access_url, "failed", error=str(exc))
                continue
            outcome[index] = path
            if journal is not None:
                size = await asyncio.to_thread(_size, path)
                await journal.set_file(dataset.access_url, "done", path=str(path), size=size)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(workers, len(chosen))):
            group.create_task(worker())
    return [(dataset, outcome[i]) for i, dataset in enumerate(chosen)]


def _distinct_names(chosen: Sequence[Dataset], folders: dict[int, str]) -> dict[int, str]:
    """File names for the datasets whose URL's own name another dataset of the same
    folder takes first (``a/x.fits`` and ``b/x.fits`` of one target): the name
    with the URL's hash (:func:`voharvest.naming.record_filename`). The others
    keep ``VOClient.download``'s name; DataLink datasets are named when resolved."""
    from .naming import record_filename, url_filename

    taken: set[tuple[str, str]] = set()
    names: dict[int, str] = {}
    for index, dataset in enumerate(chosen):
        if "datalink" in (dataset.format or "").lower():
            continue
        where = (folders[dataset.targets[0]], url_filename(dataset.access_url))
        if where in taken:
            names[index] = record_filename(dataset.access_url, None, dataset.format)
        taken.add(where)
    return names


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


async def _kept(journal: DiscoveryJournal, url: str) -> Path | None:
    """The file the journal has done for ``url``, if the disk still holds it whole."""
    state = await journal.file(url)
    if state is None or state[0] != "done" or state[1] is None:
        return None
    path = Path(state[1])
    size = await asyncio.to_thread(_size, path)
    return path if size is not None and size == state[2] else None


# --- the manifest --------------------------------------------------------------------------


def manifest_rows(
    result: DiscoveryResult, fetched: Sequence[tuple[Dataset, Outcome]] = ()
) -> list[tuple[object, ...]]:
    """A row per dataset of ``result`` (:data:`MANIFEST_COLUMNS`), with what
    :func:`download` made of it (``fetched``)."""
    labels = {t.id: t.label or f"{t.ra:g} {t.dec:+g}" for t in result.targets}
    outcomes = {id(d): o for d, o in fetched}
    rows: list[tuple[object, ...]] = []
    for dataset in result.datasets:
        record = dataset.record
        found = outcomes.get(id(dataset))
        if found is None:
            state, path, size, error = "not fetched", None, None, None
        elif isinstance(found, Path):
            state, path, size, error = "done", str(found), _size(found), None
        else:
            state, path, size, error = "failed", None, None, f"{type(found).__name__}: {found}"
        rows.append(
            (
                dataset.access_url,
                dataset.title,
                dataset.format,
                dataset.publisher_did,
                getattr(record, "ra", None),
                getattr(record, "dec", None),
                "; ".join(str(i) for i in dataset.targets),
                "; ".join(labels[i] for i in dataset.targets),
                " ".join(f"{ivoid}#{kind}" for ivoid, kind in dataset.services),
                state,
                path,
                size,
                error,
            )
        )
    return rows


def write_manifest(
    result: DiscoveryResult,
    directory: str | os.PathLike[str],
    fetched: Sequence[tuple[Dataset, Outcome]] = (),
    *,
    kept: int = 0,
) -> list[Path]:
    """Write ``manifest.xml`` and ``provenance.json`` into ``directory``.

    The VOTable has a row per dataset (:data:`MANIFEST_COLUMNS`); the JSON is
    ``result.report()`` (a record per service, totals) with the downloads'
    counts (``kept``: files taken from the journal, not fetched again). Each
    is written as ``<name>.part`` and renamed: never half-written under its
    name. Blocking: call it in a thread.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rows = manifest_rows(result, fetched)
    manifest = folder / MANIFEST_NAME

    def votable(handle: Any) -> None:
        with VOTableRows(handle, MANIFEST_FIELDS, _DESCRIPTION) as table:
            for row in rows:
                table.write(row)

    report: dict[str, Any] = result.report()
    states = [row[MANIFEST_COLUMNS.index("state")] for row in rows]
    report["downloads"] = {
        "done": states.count("done"),
        "failed": states.count("failed"),
        "not_fetched": states.count("not fetched"),
        "kept": kept,
    }
    text = json.dumps(report, indent=1, sort_keys=True) + "\n"
    provenance = folder / PROVENANCE_NAME
    _atomically(manifest, votable)
    _atomically(provenance, lambda handle: handle.write(text))
    return [manifest, provenance]


def _atomically(path: Path, write: Any) -> None:
    """``write(handle)`` into ``<path>.part``, then rename it to ``path``; on a
    failure the ``.part`` is removed and ``path`` is left as it was."""
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            write(handle)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
