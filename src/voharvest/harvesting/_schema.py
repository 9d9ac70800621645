"""The journal's tables, as the ordered steps that build them.

Each step brings a journal from one version to the next; ``PRAGMA user_version``
says how many steps a journal has had. A new journal takes them all, an old
one the steps it missed, each step in its own transaction. The steps are
idempotent: a journal written before versions were counted (user_version 0)
may already have some of what they add.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ._batches import transaction

__all__ = ["MIGRATIONS", "migrate"]

Step = Callable[[sqlite3.Connection], None]

# Marks a DataLink record as one target's in journals before step 5 (a fragment of its URL).
OLD_TARGET_MARK = "#voharvest-target="


def _tables(db: sqlite3.Connection) -> None:
    """The tables of the first release."""
    for statement in (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS searches (service TEXT NOT NULL, target TEXT NOT NULL,"
        " target_label TEXT, ra REAL, dec REAL, state TEXT NOT NULL,"
        " records INTEGER NOT NULL DEFAULT 0, overflow INTEGER NOT NULL DEFAULT 0, error TEXT,"
        " updated REAL NOT NULL, PRIMARY KEY (service, target))",
        f"CREATE TABLE IF NOT EXISTS records ({_RECORD_COLUMNS_V1}, url TEXT NOT NULL UNIQUE)",
        "CREATE TABLE IF NOT EXISTS sightings (url TEXT NOT NULL, service TEXT NOT NULL,"
        " target TEXT NOT NULL, PRIMARY KEY (url, service, target))",
    ):
        db.execute(statement)


_RECORD_COLUMNS_V1 = (
    "id INTEGER PRIMARY KEY, path TEXT NOT NULL, service TEXT NOT NULL, target TEXT NOT NULL,"
    " target_label TEXT, title TEXT, format TEXT, announced_size INTEGER, ra REAL, dec REAL,"
    " state TEXT NOT NULL, bytes INTEGER, error TEXT, updated REAL NOT NULL"
)
_ADDED = (
    ("kind", "TEXT NOT NULL DEFAULT 'file'"),
    ("parent", "INTEGER"),
    ("via", "TEXT"),
    ("mode", "TEXT"),
    ("region", "TEXT"),
    ("preview", "TEXT"),
)


def _columns(*added: str) -> Step:
    """Add the records columns ``added`` (from ``_ADDED``) that a journal lacks."""

    def step(db: sqlite3.Connection) -> None:
        present = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        for name, declaration in _ADDED:
            if name in added and name not in present:
                db.execute(f"ALTER TABLE records ADD COLUMN {name} {declaration}")

    return step


def _indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS records_state ON records (state, id)")
    db.execute("CREATE INDEX IF NOT EXISTS records_parent ON records (parent)")


def _keyed_by_url_and_target(db: sqlite3.Connection) -> None:
    """A record is its URL and, for a cutout through DataLink, the target it is cut for.

    Earlier journals made such records unique by a fragment on the URL
    (``<url>#voharvest-target=<target>``); the table is rebuilt with the URL
    itself and a ``cut_for`` column, ids kept (children point at them).
    """
    present = [row[1] for row in db.execute("PRAGMA table_info(records)")]
    if "cut_for" in present:
        return
    kept = [name for name in present if name != "url"]
    declared = ", ".join(f"{name} {decl}" for name, decl in _ADDED)
    db.execute(
        f"CREATE TABLE records_keyed ({_RECORD_COLUMNS_V1}, {declared}, url TEXT NOT NULL,"
        " cut_for TEXT NOT NULL DEFAULT '', UNIQUE (url, cut_for))"
    )
    at = f"instr(url, '{OLD_TARGET_MARK}')"
    url = f"CASE WHEN {at} > 0 THEN substr(url, 1, {at} - 1) ELSE url END"
    cut_for = f"CASE WHEN {at} > 0 THEN substr(url, {at} + {len(OLD_TARGET_MARK)}) ELSE '' END"
    columns = ", ".join(kept)
    db.execute(
        f"INSERT INTO records_keyed ({columns}, url, cut_for)"
        f" SELECT {columns}, {url}, {cut_for} FROM records"
    )
    db.execute(f"UPDATE OR IGNORE sightings SET url = {url} WHERE {at} > 0")
    db.execute(f"DELETE FROM sightings WHERE {at} > 0")
    db.execute("DROP TABLE records")
    db.execute("ALTER TABLE records_keyed RENAME TO records")
    _indexes(db)


#: The steps, in order; a journal at version n has had the first n.
MIGRATIONS: tuple[Step, ...] = (
    _tables,
    _columns("kind", "parent", "via", "mode", "region"),  # DataLink records
    _columns("preview"),
    _indexes,
    _keyed_by_url_and_target,
)


def migrate(db: sqlite3.Connection) -> None:
    """Take the journal through the steps it has not had."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(db):
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
