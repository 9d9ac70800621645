"""What a harvest found and wrote: status summaries and manifests (CSV, VOTable).

These read the journal with a read-only connection: they block, so call them
outside the event loop (the CLI does) or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from ._journal import open_readonly

__all__ = [
    "MANIFEST_COLUMNS",
    "HarvestStatus",
    "VOTableRows",
    "manifest_rows",
    "status",
    "write_manifest",
]

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
    "mode",
    "region",
    "via",
    "preview",
)


@dataclass
class ServiceStatus:
    searches_done: int = 0
    searches_failed: int = 0
    records_done: int = 0
    records_pending: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    bytes: int = 0


@dataclass
class HarvestStatus:
    """Counts from a harvest's journal, in all and per service."""

    directory: Path
    services: dict[str, ServiceStatus] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    #: The same failures with the service each came from: (kind, service key, what, error).
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
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
        # A DataLink record once resolved is counted through the files it led to.
        for key, state, count, size in db.execute(
            "SELECT service, state, count(*), coalesce(sum(bytes), 0) FROM records"
            " WHERE state != 'resolved' GROUP BY service, state"
        ):
            one = service(key)
            setattr(one, f"records_{state}", getattr(one, f"records_{state}") + count)
            one.bytes += size
        rows = db.execute(
            "SELECT 'search', service, coalesce(target_label, target), error FROM searches"
            " WHERE state = 'failed'"
            " UNION ALL SELECT 'download', service, url, error FROM records WHERE state = 'failed'"
            " LIMIT ?",
            (max_errors,),
        )
        result.failures = [(kind, key, what, error or "") for kind, key, what, error in rows]
        result.errors = [(kind, what, error) for kind, _, what, error in result.failures]
        return result
    finally:
        db.close()


# One row per sighting of a record (a record cut for one target is seen by that
# target's searches only); a resolved DataLink record gives a row per file it led
# to (c), the others their own row (c is NULL).
_MANIFEST_QUERY = (
    "SELECT s.service, coalesce(q.target_label, s.target), coalesce(c.url, r.url),"
    " coalesce(c.title, r.title), coalesce(c.format, r.format), r.ra, r.dec,"
    " coalesce(c.announced_size, r.announced_size), coalesce(c.state, r.state),"
    " coalesce(c.path, r.path), coalesce(c.bytes, r.bytes), coalesce(c.error, r.error),"
    " coalesce(c.mode, r.mode, 'full'), coalesce(c.region, r.region),"
    " coalesce(c.via, r.via), coalesce(c.preview, r.preview)"
    " FROM sightings AS s JOIN records AS r ON r.url = s.url AND r.cut_for IN ('', s.target)"
    " LEFT JOIN records AS c ON c.parent = r.id AND r.kind = 'datalink'"
    " LEFT JOIN searches AS q ON q.service = s.service AND q.target = s.target"
    " ORDER BY r.id, c.id, s.service, s.target"
)
_FLOATS = ("ra", "dec")
# Characters XML 1.0 can't hold (a server's title may carry them): shown as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_INTEGERS = ("announced_size", "bytes")


def manifest_rows(db: sqlite3.Connection) -> Iterator[tuple[object, ...]]:
    """Every sighting of a record: (service, target, url, ..., error), in journal order.

    Rows come from a cursor one at a time: a manifest of millions of files
    takes no more memory than one of ten.
    """
    yield from db.execute(_MANIFEST_QUERY)


def _votable_frame(columns: tuple[str, ...] = MANIFEST_COLUMNS) -> tuple[str, str]:
    """The VOTable document around the rows, written by astropy (for one stand-in row)."""
    import numpy as np  # (astropy loads only for a manifest's VOTable)
    from astropy.table import MaskedColumn, Table

    table = Table()
    for name in columns:
        if name == "partition":
            table[name] = MaskedColumn([0], dtype="int32")
        elif name in _FLOATS:
            table[name] = MaskedColumn([0.0], dtype=float, unit="deg")
        elif name in _INTEGERS:
            table[name] = MaskedColumn([0], dtype="int64", unit="byte")
        else:
            table[name] = MaskedColumn(np.array(["x"], dtype=object))  # arraysize="*"
    buffer = io.BytesIO()
    table.write(buffer, format="votable", tabledata_format="tabledata")
    text = buffer.getvalue().decode("utf-8")
    head, found, rest = text.partition("<TABLEDATA>")
    _, found_end, tail = rest.partition("</TABLEDATA>")
    if not (found and found_end):
        raise RuntimeError("astropy wrote no TABLEDATA for the manifest frame")
    return head + "<TABLEDATA>\n", "</TABLEDATA>" + tail


def _double(value: object) -> str:
    """A double as VOTable TABLEDATA writes it: ``+Inf``, ``-Inf``, ``NaN`` or the number."""
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _long(value: object) -> str | None:
    """A VOTable long (64-bit), or None (null) for what isn't one."""
    if isinstance(value, float):
        if not value.is_integer():  # (also NaN and infinities)
            return None
        value = int(value)
    number = int(value)  # type: ignore[call-overload]
    return str(number) if -(2**63) <= number < 2**63 else None


def _cell(name: str, value: object) -> str:
    if value is None or (value == "" and (name in _FLOATS or name in _INTEGERS)):
        return "<TD/>"  # VOTable 1.3: an empty cell is null, for every datatype
    try:
        if name == "partition" or name in _INTEGERS:
            text = _long(value)  # an integer column has no null value: empty cell
            return "<TD/>" if text is None else f"<TD>{text}</TD>"
        if name in _FLOATS:
            return f"<TD>{_double(value)}</TD>"
    except (ValueError, TypeError, OverflowError):
        return "<TD/>"  # a CSV cell that isn't a number (not one we wrote): null
    return f"<TD>{xml_escape(_NOT_XML.sub(chr(0xFFFD), str(value)))}</TD>"


class VOTableRows:
    """A manifest VOTable written a row at a time (constant memory).

    ``columns``: MANIFEST_COLUMNS, optionally with ``partition`` first (the
    combined manifest of a Dask harvest). Values may be the journal's (None
    for null) or a CSV's text ('' for null).
    """

    def __init__(self, handle: Any, columns: tuple[str, ...] = MANIFEST_COLUMNS) -> None:
        self.handle = handle
        self.columns = columns
        self._head, self._tail = _votable_frame(columns)

    def __enter__(self) -> VOTableRows:
        self.handle.write(self._head)
        return self

    def write(self, row: Sequence[object]) -> None:
        cells = "".join(_cell(n, v) for n, v in zip(self.columns, row, strict=True))
        self.handle.write(f"<TR>{cells}</TR>\n")

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.handle.write(self._tail)


def write_manifest(
    directory: str | Path,
    *,
    csv_path: str | Path | None = None,
    votable_path: str | Path | None = None,
) -> list[Path]:
    """Write the manifest of the harvest in ``directory`` as CSV and VOTable.

    Defaults: ``manifest.csv`` and ``manifest.xml`` in the directory. Rows are
    streamed from the journal (constant memory); the VOTable's metadata comes
    from astropy. Each file is written under a temporary name and renamed, so a
    reader never sees half of one.
    """
    folder = Path(directory)
    csv_target = Path(csv_path) if csv_path is not None else folder / "manifest.csv"
    vot_target = Path(votable_path) if votable_path is not None else folder / "manifest.xml"
    csv_partial = csv_target.with_name(csv_target.name + ".part")
    vot_partial = vot_target.with_name(vot_target.name + ".part")
    db = open_readonly(folder)
    try:
        with (
            csv_partial.open("w", newline="", encoding="utf-8") as csv_handle,
            vot_partial.open("w", encoding="utf-8") as vot_handle,
        ):
            writer = csv.writer(csv_handle)
            writer.writerow(MANIFEST_COLUMNS)
            with VOTableRows(vot_handle) as votable:
                for row in manifest_rows(db):
                    writer.writerow(row)
                    votable.write(row)
    finally:
        db.close()
    csv_partial.replace(csv_target)
    vot_partial.replace(vot_target)
    return [csv_target, vot_target]
