"""What the journal reads and writes: its records, and each operation as a plain function
of a SQLite connection (run in the journal's thread by :class:`._journal.Journal`, which
also documents the tables). Every INSERT names its columns."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FoundRecord",
    "PendingRecord",
    "describe_services",
    "done_pairs",
    "download_done",
    "download_failed",
    "host_rates",
    "last_record_id",
    "meta",
    "resolved",
    "search_done",
    "search_failed",
    "service_folders",
    "set_finished",
    "set_host_rates",
    "set_meta",
    "unfinished",
]


@dataclass(frozen=True)
class PendingRecord:
    """A record chosen for download and not yet done.

    ``kind`` is ``file`` or ``datalink`` (a document to resolve first);
    ``centre`` the searched position (a cutout's centre), where known;
    ``cut_for`` the target a DataLink record's cutout is cut for ('' if none).
    """

    id: int
    url: str
    path: str
    format: str | None
    announced_size: int | None
    service: str
    target: str
    target_label: str
    kind: str = "file"
    title: str | None = None
    centre: tuple[float, float] | None = None
    cut_for: str = ""


@dataclass(frozen=True)
class FoundRecord:
    """A record a search chose (or a DataLink document led to), as the journal takes it."""

    url: str
    path: str
    title: str | None
    format: str | None
    announced_size: int | None
    ra: float | None
    dec: float | None
    kind: str = "file"
    via: str | None = None
    mode: str | None = None
    region: str | None = None
    preview: str | None = None
    cut_for: str = ""


def _put(db: sqlite3.Connection, verb: str, table: str, row: Mapping[str, Any]) -> int:
    """``verb`` (INSERT OR IGNORE, INSERT OR REPLACE) ``row`` into ``table``; rows changed."""
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    sql = f"{verb} INTO {table} ({columns}) VALUES ({marks})"
    return db.execute(sql, tuple(row.values())).rowcount


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    _put(db, "INSERT OR REPLACE", "meta", {"key": key, "value": value})


def meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _insert(
    db: sqlite3.Connection,
    record: FoundRecord,
    parent: PendingRecord | None,
    found_by: tuple[str, str, str],
    centre: tuple[float, float] | None,
    now: float,
) -> PendingRecord | None:
    """Insert a record unless it is known; the new record as pending work, or None."""
    service, target, label = found_by
    fields = {
        "url": record.url, "cut_for": record.cut_for, "path": record.path,
        "service": service, "target": target, "target_label": label, "title": record.title,
        "format": record.format, "announced_size": record.announced_size, "ra": record.ra,
        "dec": record.dec, "state": "pending", "updated": now, "kind": record.kind,
        "parent": parent.id if parent else None, "via": record.via, "mode": record.mode,
        "region": record.region, "preview": record.preview,
    }  # fmt: skip
    cursor = db.execute(
        f"INSERT OR IGNORE INTO records ({', '.join(fields)})"
        f" VALUES ({', '.join('?' * len(fields))})",
        tuple(fields.values()),
    )
    if not cursor.rowcount:
        return None
    return PendingRecord(
        int(cursor.lastrowid or 0), record.url, record.path, record.format,
        record.announced_size, service, target, label, record.kind, record.title, centre,
        record.cut_for,
    )  # fmt: skip


def _set_state(db: sqlite3.Connection, record_id: int, **values: Any) -> None:
    """Change a record's columns (``state``, ``bytes``, ``error``), stamped with the time."""
    values["updated"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in values)
    db.execute(f"UPDATE records SET {assignments} WHERE id = ?", (*values.values(), record_id))


# --- the operations: each a plain function of a connection (Journal runs them) ------------


def done_pairs(db: sqlite3.Connection, targets: Sequence[str]) -> set[tuple[str, str]]:
    """The (service, target) pairs among ``targets`` whose search is done."""
    done: set[tuple[str, str]] = set()
    targets = list(targets)
    for start in range(0, len(targets), 500):
        batch = targets[start : start + 500]
        marks = ",".join("?" * len(batch))
        rows = db.execute(
            f"SELECT service, target FROM searches WHERE state = 'done' AND target IN ({marks})",
            batch,
        )
        done.update((service, target) for service, target in rows)
    return done


def _search_row(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    **outcome: Any,
) -> None:
    ra, dec = position if position else (None, None)
    row = {"service": service, "target": target, "target_label": label, "ra": ra, "dec": dec}
    _put(db, "INSERT OR REPLACE", "searches", {**row, **outcome, "updated": time.time()})


def search_done(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    found: Iterable[FoundRecord],
    overflow: bool,
) -> list[PendingRecord]:
    """Journal a finished search and its records; return the records new to the harvest."""
    now = time.time()
    found = list(found)
    new: list[PendingRecord] = []
    for record in found:
        pending = _insert(db, record, None, (service, target, label), position, now)
        if pending is not None:
            new.append(pending)
        sighting = {"url": record.url, "service": service, "target": target}
        _put(db, "INSERT OR IGNORE", "sightings", sighting)
    _search_row(
        db, service, target, label, position,
        state="done", records=len(found), overflow=int(overflow), error=None,
    )  # fmt: skip
    return new


def search_failed(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    error: str,
) -> None:
    """Journal a failed search (run again by the next run)."""
    _search_row(
        db, service, target, label, position, state="failed", records=0, overflow=0, error=error
    )


def unfinished(db: sqlite3.Connection, after: int, below: int, limit: int) -> list[PendingRecord]:
    """Pending or failed records with ``after < id <= below``, in id order."""
    rows = db.execute(
        "SELECT r.id, r.url, r.path, r.format, r.announced_size, r.service, r.target,"
        " coalesce(r.target_label, r.target), r.kind, r.title, q.ra, q.dec, r.cut_for"
        " FROM records r LEFT JOIN searches q ON q.service = r.service AND q.target = r.target"
        " WHERE r.state IN ('pending', 'failed') AND r.id > ? AND r.id <= ?"
        " ORDER BY r.id LIMIT ?",
        (after, below, limit),
    )
    found = []
    for row in rows:
        ra, dec = row[10], row[11]
        centre = (float(ra), float(dec)) if ra is not None and dec is not None else None
        ident, url, path, file_format, size, service, target, label, kind, title = row[:10]
        found.append(PendingRecord(ident, url, path, file_format, size, service, target, label,
                                   kind, title, centre, row[12]))  # fmt: skip
    return found


def resolved(
    db: sqlite3.Connection,
    parent: PendingRecord,
    children: Sequence[FoundRecord],
    note: str | None = None,
) -> list[PendingRecord]:
    """Journal what a DataLink record led to; return the files new to the harvest.

    The children and the parent's new state (``resolved``, or ``skipped``
    with ``note`` when there are none) are written in one transaction.
    """
    now = time.time()
    new: list[PendingRecord] = []
    found_by = (parent.service, parent.target, parent.target_label)
    for child in children:
        pending = _insert(db, child, parent, found_by, parent.centre, now)
        if pending is not None:
            new.append(pending)
        else:
            # Found before by another route: the parent's searches saw it too
            # (those of its target, if it was cut for one).
            db.execute(
                "INSERT OR IGNORE INTO sightings (url, service, target)"
                " SELECT ?, service, target FROM sightings"
                " WHERE url = ? AND ? IN ('', target)",
                (child.url, parent.url, parent.cut_for),
            )
    state = "resolved" if children else "skipped"
    _set_state(db, parent.id, state=state, error=note)
    return new


def last_record_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0])


def download_done(db: sqlite3.Connection, record_id: int, size: int) -> None:
    _set_state(db, record_id, state="done", bytes=size, error=None)


def download_failed(db: sqlite3.Connection, record_id: int, error: str) -> None:
    _set_state(db, record_id, state="failed", error=error)


def set_finished(db: sqlite3.Connection, finished: bool) -> None:
    """Mark whether every target was read and every task run (by this run)."""
    set_meta(db, "finished", "1" if finished else "0")


def describe_services(db: sqlite3.Connection, described: Mapping[str, Mapping[str, str]]) -> None:
    """Remember what each service is (label, title, waveband, folder), for previews and
    reports, and for a resumed run to put its files where the runs before did.

    Kept in ``meta`` under ``services`` as JSON, service key to facts; a later
    run adds its services to those of the runs before.
    """
    known = json.loads(meta(db, "services") or "{}")
    known.update(described)
    set_meta(db, "services", json.dumps(known, sort_keys=True))


def service_folders(db: sqlite3.Connection) -> dict[str, str]:
    """The folder each service's files went to in earlier runs (service key -> folder).

    Journals say so in their service descriptions; for a service described
    without one (by an earlier version) the paths of its records tell.
    """
    known = json.loads(meta(db, "services") or "{}")
    folders = {key: facts["folder"] for key, facts in known.items() if facts.get("folder")}
    if len(folders) < len(known) or not known:
        rows = db.execute(
            "SELECT service, min(path) FROM records WHERE parent IS NULL GROUP BY service"
        )
        paths = {service: path.split("/", 1)[0] for service, path in rows if "/" in path}
        folders = {**paths, **folders}
    return folders


def host_rates(db: sqlite3.Connection) -> dict[str, float]:
    """The request rate each host ended at in the last run (origin -> requests/s)."""
    try:
        rates = json.loads(meta(db, "host_rates") or "{}")
    except ValueError:
        return {}
    if not isinstance(rates, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in rates.items()
        if isinstance(v, int | float) and 0 < v < float("inf")
    }


def set_host_rates(db: sqlite3.Connection, rates: Mapping[str, float]) -> None:
    """Keep where each host's adaptive rate ended, for a resumed run to start there."""
    set_meta(db, "host_rates", json.dumps({k: v for k, v in rates.items() if 0 < v < float("inf")}))
