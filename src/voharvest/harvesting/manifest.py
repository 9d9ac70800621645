"""What a harvest found and wrote: status summaries and manifests (CSV, VOTable).

These read the journal with a read-only connection: they block, so call them
outside the event loop (the CLI does) or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
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
    "HARVEST_COLUMNS",
    "MANIFEST_COLUMNS",
    "Column",
    "HarvestStatus",
    "VOTableRows",
    "manifest_rows",
    "status",
    "write_manifest",
]


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
# Characters XML 1.0 can't hold (a server's title may carry them): shown as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def manifest_rows(db: sqlite3.Connection) -> Iterator[tuple[object, ...]]:
    """Every sighting of a record: (service, target, url, ..., error), in journal order.

    Rows come from a cursor one at a time: a manifest of millions of files
    takes no more memory than one of ten. (SQLite would otherwise build a
    transient index of every record for the DataLink join, in memory; the
    journal has a lasting one.)
    """
    db.execute("PRAGMA automatic_index = OFF")
    yield from db.execute(_MANIFEST_QUERY)


@dataclass(frozen=True)
class Column:
    """A column of a manifest VOTable: its FIELD.

    ``datatype``: ``double``, ``long``, ``int`` or ``unicodeChar`` (text of
    any length); ``ucd`` a UCD1+ word list, ``description`` a sentence.
    """

    name: str
    datatype: str = "unicodeChar"
    unit: str = ""
    ucd: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.datatype not in ("double", "long", "int", "unicodeChar"):
            raise ValueError(f"column {self.name!r}: no datatype {self.datatype!r}")

    def field(self) -> str:
        """The FIELD element, indented for the TABLE."""
        size = ' arraysize="*"' if self.datatype == "unicodeChar" else ""
        unit = f' unit="{_attribute(self.unit)}"' if self.unit else ""
        ucd = f' ucd="{_attribute(self.ucd)}"' if self.ucd else ""
        name = _attribute(self.name)
        about = (
            f"\n    <DESCRIPTION>{xml_escape(self.description)}</DESCRIPTION>\n   "
            if self.description
            else ""
        )
        return (
            f'   <FIELD name="{name}" datatype="{self.datatype}"{size}{unit}{ucd}>{about}</FIELD>\n'
        )

    def cell(self, value: object) -> str:
        """``value`` as a TD: the journal's values (None for null) or a CSV's text ('')."""
        if value is None or (value == "" and self.datatype != "unicodeChar"):
            return "<TD/>"  # VOTable 1.3: an empty cell is null, for every datatype
        try:
            if self.datatype in ("long", "int"):
                text = _integer(value, 64 if self.datatype == "long" else 32)
                return "<TD/>" if text is None else f"<TD>{text}</TD>"  # (no null value)
            if self.datatype == "double":
                return f"<TD>{_double(value)}</TD>"
        except (ValueError, TypeError, OverflowError):
            return "<TD/>"  # a CSV cell that isn't a number (not one we wrote): null
        return f"<TD>{xml_escape(_NOT_XML.sub(chr(0xFFFD), str(value)))}</TD>"


def _attribute(text: str) -> str:
    """``text`` for an XML attribute's double quotes."""
    return xml_escape(text, {'"': "&quot;"})


_SIZE = "phys.size;meta.file"  # (ObsCore's access_estsize)
#: The harvest manifest's columns (:data:`MANIFEST_COLUMNS`), and ``partition``
#: (a Dask harvest's combined manifest).
HARVEST_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("partition", "int", "", "meta.id", "The Dask partition that harvested the row"),
        Column("service", ucd="meta.id", description="The service searched: its kind and URL"),
        Column("target", ucd="meta.id", description="The target searched, as it was given"),
        Column("url", ucd="meta.ref.url", description="Where the file was fetched from"),
        Column("title", ucd="meta.title", description="The dataset's title, from the service"),
        Column("format", ucd="meta.code.mime", description="The dataset's media type"),
        Column("ra", "double", "deg", "pos.eq.ra", "Right ascension the service announced"),
        Column("dec", "double", "deg", "pos.eq.dec", "Declination the service announced"),
        Column("announced_size", "long", "byte", _SIZE, "Size the service announced"),
        Column("state", ucd="meta.code.status", description="done, failed, pending or skipped"),
        Column("path", ucd="meta.ref;meta.file", description="The file, in the harvest's folder"),
        Column("bytes", "long", "byte", _SIZE, "Bytes written"),
        Column("error", ucd="meta.note", description="Why the file is not there"),
        Column("mode", ucd="meta.code", description="full (the whole file) or cutout"),
        Column("region", ucd="pos.outline", description="The cutout's region (SODA), if cut"),
        Column("via", ucd="meta.ref.url", description="The DataLink document it came through"),
        Column("preview", ucd="meta.ref.url", description="A preview the service announced"),
    )
}
#: The harvest manifest's columns, in the order of the journal query's (and the CSV's).
MANIFEST_COLUMNS = tuple(name for name in HARVEST_COLUMNS if name != "partition")
_NAMESPACE = "http://www.ivoa.net/xml/VOTable/v1.3"


def _votable_frame(columns: Sequence[Column], description: str) -> tuple[str, str]:
    """The VOTable 1.4 document around the rows: (up to <TABLEDATA>, from </TABLEDATA>)."""
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<VOTABLE version="1.4" xmlns="{_NAMESPACE}"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{_NAMESPACE} http://www.ivoa.net/xml/VOTable/VOTable-1.4.xsd">\n'
        ' <RESOURCE type="results">\n'
        '  <INFO name="generator" value="voharvest"/>\n'
        '  <TABLE name="manifest">\n'
        f"   <DESCRIPTION>{xml_escape(description)}</DESCRIPTION>\n"
        + "".join(column.field() for column in columns)
        + "   <DATA>\n    <TABLEDATA>\n"
    )
    return head, "    </TABLEDATA>\n   </DATA>\n  </TABLE>\n </RESOURCE>\n</VOTABLE>\n"


def _double(value: object) -> str:
    """A double as VOTable TABLEDATA writes it: ``+Inf``, ``-Inf``, ``NaN`` or the number."""
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _integer(value: object, bits: int) -> str | None:
    """A VOTable integer of ``bits`` bits, or None (null) for what isn't one."""
    if isinstance(value, float):
        if not value.is_integer():  # (also NaN and infinities)
            return None
        value = int(value)
    number = int(value)  # type: ignore[call-overload]
    limit = 2 ** (bits - 1)
    return str(number) if -limit <= number < limit else None


class VOTableRows:
    """A manifest VOTable written a row at a time (constant memory).

    ``columns``: names of :data:`HARVEST_COLUMNS` (MANIFEST_COLUMNS, optionally
    with ``partition`` first: the combined manifest of a Dask harvest) or
    :class:`Column` s of one's own. Values may be the journal's (None for
    null) or a CSV's text ('' for null).
    """

    def __init__(
        self,
        handle: Any,
        columns: Sequence[str | Column] = MANIFEST_COLUMNS,
        description: str = "The files of a harvest: a row per sighting of a dataset",
    ) -> None:
        self.handle = handle
        self.columns = tuple(_column(c) for c in columns)
        self._head, self._tail = _votable_frame(self.columns, description)

    def __enter__(self) -> VOTableRows:
        self.handle.write(self._head)
        return self

    def write(self, row: Sequence[object]) -> None:
        cells = "".join(c.cell(v) for c, v in zip(self.columns, row, strict=True))
        self.handle.write(f"<TR>{cells}</TR>\n")

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.handle.write(self._tail)


def _column(given: str | Column) -> Column:
    if isinstance(given, Column):
        return given
    if given not in HARVEST_COLUMNS:
        raise ValueError(f"no manifest column {given!r}: give a Column")
    return HARVEST_COLUMNS[given]


def write_manifest(
    directory: str | Path,
    *,
    csv_path: str | Path | None = None,
    votable_path: str | Path | None = None,
) -> list[Path]:
    """Write the manifest of the harvest in ``directory`` as CSV and VOTable.

    Defaults: ``manifest.csv`` and ``manifest.xml`` in the directory. Rows are
    streamed from the journal (constant memory). Each file is written under a
    temporary name and renamed, so a reader never sees half of one.
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
