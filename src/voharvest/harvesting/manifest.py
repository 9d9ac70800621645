"""What a harvest found and wrote: status summaries and manifests (CSV, VOTable).

These read the journal with a read-only connection: they block, so call them
outside the event loop (the CLI does) or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from astropy.table import MaskedColumn, Table

from ._journal import open_readonly

__all__ = ["MANIFEST_COLUMNS", "HarvestStatus", "manifest_rows", "status", "write_manifest"]

MANIFEST_COLUMNS = (
    "service",
    "target",
    "url",
    "title",
    "format",
    "ra",
    "dec",
    "announced_size",
    "state",
    "path",
    "bytes",
    "error",
)


@dataclass
class ServiceStatus:
    searches_done: int = 0
    searches_failed: int = 0
    records_done: int = 0
    records_pending: int = 0
    records_failed: int = 0
    bytes: int = 0


@dataclass
class HarvestStatus:
    """Counts from a harvest's journal, in all and per service."""

    directory: Path
    services: dict[str, ServiceStatus] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    finished: bool = False  # the last run read every target and ran every task

    @property
    def total(self) -> ServiceStatus:
        total = ServiceStatus()
        for one in self.services.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(one, name))
        return total

    @property
    def complete(self) -> bool:
        total = self.total
        return (
            self.finished
            and total.searches_failed == 0
            and total.records_pending == total.records_failed == 0
        )


def status(directory: str | Path, *, max_errors: int = 20) -> HarvestStatus:
    """The state of the harvest in ``directory`` (JournalError if there is none)."""
    folder = Path(directory)
    db = open_readonly(folder)
    try:
        result = HarvestStatus(folder)
        row = db.execute("SELECT value FROM meta WHERE key = 'finished'").fetchone()
        result.finished = row is not None and row[0] == "1"

        def service(key: str) -> ServiceStatus:
            return result.services.setdefault(key, ServiceStatus())

        for key, state, count in db.execute(
            "SELECT service, state, count(*) FROM searches GROUP BY service, state"
        ):
            if state == "done":
                service(key).searches_done += count
            else:
                service(key).searches_failed += count
        for key, state, count, size in db.execute(
            "SELECT service, state, count(*), coalesce(sum(bytes), 0) FROM records"
            " GROUP BY service, state"
        ):
            one = service(key)
            setattr(one, f"records_{state}", getattr(one, f"records_{state}") + count)
            one.bytes += size
        rows = db.execute(
            "SELECT 'search', target_label, error FROM searches WHERE state = 'failed'"
            " UNION ALL SELECT 'download', url, error FROM records WHERE state = 'failed'"
            " LIMIT ?",
            (max_errors,),
        )
        result.errors = [(kind, what, error or "") for kind, what, error in rows]
        return result
    finally:
        db.close()


def manifest_rows(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    """Every sighting of a record: (service, target, url, ..., error), in journal order."""
    return list(
        db.execute(
            "SELECT s.service, coalesce(q.target_label, s.target), r.url, r.title, r.format,"
            " r.ra, r.dec, r.announced_size, r.state, r.path, r.bytes, r.error"
            " FROM sightings AS s JOIN records AS r ON r.url = s.url"
            " LEFT JOIN searches AS q ON q.service = s.service AND q.target = s.target"
            " ORDER BY r.id, s.service, s.target"
        )
    )


def write_manifest(
    directory: str | Path,
    *,
    csv_path: str | Path | None = None,
    votable_path: str | Path | None = None,
) -> list[Path]:
    """Write the manifest of the harvest in ``directory`` as CSV and/or VOTable.

    Defaults: ``manifest.csv`` and ``manifest.xml`` in the directory. Each is
    written to a temporary name and renamed, so a reader never sees half of one.
    """
    folder = Path(directory)
    db = open_readonly(folder)
    try:
        rows = manifest_rows(db)
    finally:
        db.close()
    written = []
    csv_target = Path(csv_path) if csv_path is not None else folder / "manifest.csv"
    partial = csv_target.with_name(csv_target.name + ".part")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    partial.replace(csv_target)
    written.append(csv_target)

    vot_target = Path(votable_path) if votable_path is not None else folder / "manifest.xml"
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in MANIFEST_COLUMNS]
    table = Table()
    for name, values in zip(MANIFEST_COLUMNS, columns, strict=True):
        if name in ("ra", "dec"):
            table[name] = MaskedColumn(
                [v if v is not None else 0.0 for v in values],
                mask=[v is None for v in values],
                dtype=float,
                unit="deg",
            )
        elif name in ("announced_size", "bytes"):
            table[name] = MaskedColumn(
                [v if v is not None else 0 for v in values],
                mask=[v is None for v in values],
                dtype="int64",
                unit="byte",
            )
        else:
            table[name] = MaskedColumn(
                ["" if v is None else str(v) for v in values],
                mask=[v is None for v in values],
                dtype=str,
            )
    partial = vot_target.with_name(vot_target.name + ".part")
    table.write(partial, format="votable", overwrite=True)
    partial.replace(vot_target)
    written.append(vot_target)
    return written
