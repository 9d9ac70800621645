"""Where a cluster harvest writes: a shared directory, or any fsspec file system.

Layout under the output root (a path or an fsspec URL such as ``s3://bucket/run``)::

    <root>/voharvest-dask.json          the plan: partition count and how targets are split
    <root>/manifest.csv                 the combined manifest (a ``partition`` column first)
    <root>/partitions/0003/targets.jsonl        the partition's targets, one JSON object a line
    <root>/partitions/0003/manifest.csv, .xml   the partition's own manifest
    <root>/partitions/0003/<service>/<target>/<file>

In a shared directory each partition's journal (``voharvest-journal.sqlite``)
lives in its partition folder and is written in place. Anywhere else, a
partition harvests into a local staging folder, uploads every finished file
(to ``<name>.part``, then moved into place) and notes each upload in
``voharvest-uploads.log`` there, and at its end uploads its manifest and a
copy of its journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from voharvest._exceptions import StorageError
from voharvest.harvesting import JOURNAL_NAME, Target

__all__ = [
    "PLAN_NAME",
    "UPLOAD_LOG",
    "Store",
    "UploadLog",
    "snapshot_journal",
    "target_from_json",
    "target_to_json",
]

PLAN_NAME = "voharvest-dask.json"
UPLOAD_LOG = "voharvest-uploads.log"


def target_to_json(target: Target) -> str:
    values = {k: v for k, v in vars(target).items() if v is not None}
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def target_from_json(line: str) -> Target:
    return Target(**json.loads(line))


class Store:
    """An output root reached through fsspec; picklable (the file system is made on use)."""

    def __init__(self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None):
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        self._root = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def _open(self) -> None:
        if self._fs is None:
            fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            self._fs, self._root = fs, str(root).rstrip("/") or "/"

    @property
    def fs(self) -> Any:
        self._open()
        return self._fs

    @property
    def root(self) -> str:
        self._open()
        return self._root

    @property
    def is_local(self) -> bool:
        """A directory of this machine's file system (shared with the workers, or not)."""
        return isinstance(self.fs, LocalFileSystem)

    @property
    def digest(self) -> str:
        """A short name for this root (staging folders are kept apart by it)."""
        return hashlib.sha256(f"{self.fs.protocol}:{self.root}".encode()).hexdigest()[:12]

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def partition(self, index: int, *parts: str) -> str:
        return self.path("partitions", f"{index:04d}", *parts)

    # --- small files ----------------------------------------------------------

    def read_json(self, *parts: str) -> Any:
        path = self.path(*parts)
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)

    def write_text(self, path: str, text: str) -> None:
        """Write a whole small file: under ``.part``, then moved into place."""
        partial = path + ".part"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        self.fs.mv(partial, path)

    def targets(self, index: int) -> Iterator[Target]:
        """The partition's targets, read lazily."""
        path = self.partition(index, "targets.jsonl")
        if not self.fs.exists(path):
            return
        with self.fs.open(path, "r", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield target_from_json(line)

    # --- files ----------------------------------------------------------------

    def upload(self, local: Path, destination: str) -> None:
        """Copy a finished file to ``destination``: under ``.part``, then moved into place.

        On a local file system the move is a rename (atomic); on object stores
        a ``.part`` key is copied to the final key (an object appears whole).
        """
        partial = destination + ".part"
        try:
            self.fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(os.fspath(local), partial)
            self.fs.mv(partial, destination)
        except OSError as exc:
            raise StorageError(f"can't upload {local} to {destination}: {exc}") from exc

    def size(self, path: str) -> int | None:
        try:
            return int(self.fs.size(path))
        except (FileNotFoundError, OSError):
            return None

    def download(self, path: str, local: Path) -> bool:
        if not self.fs.exists(path):
            return False
        partial = local.with_name(local.name + ".part")
        self.fs.get_file(path, os.fspath(partial))
        partial.replace(local)
        return True


class UploadLog:
    """The staging folder's record of uploads: one ``<relative path>\\t<bytes>`` line each."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / UPLOAD_LOG
        self.done: dict[str, int] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                relative, _, size = line.rpartition("\t")
                if relative and size.isdigit():
                    self.done[relative] = int(size)

    def add(self, relative: str, size: int) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{relative}\t{size}\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[relative] = size


def snapshot_journal(folder: Path, copy: Path) -> bool:
    """A consistent copy of the journal in ``folder`` (SQLite's backup), if there is one."""
    source = folder / JOURNAL_NAME
    if not source.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as db:
        with contextlib.closing(sqlite3.connect(copy)) as target:
            db.backup(target)
    return True
