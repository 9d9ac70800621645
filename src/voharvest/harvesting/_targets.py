"""Targets: names or positions, read lazily from iterables, async iterables or files."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._checks import is_number, is_skycoord, position_degrees
from .._exceptions import ParameterError
from .._files import safe_filename

__all__ = ["Target", "iter_targets", "parse_target"]

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Target:
    """A place to search: an object name (resolved when searched) or ICRS degrees.

    ``key`` identifies the target across runs (the journal's key); ``label``
    names its folder.
    """

    name: str | None = None
    ra: float | None = None
    dec: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.name is None and (self.ra is None or self.dec is None):
            raise ParameterError("a target needs a name or both ra and dec")
        if self.ra is not None and self.dec is not None:
            ra, dec = position_degrees((self.ra, self.dec), "target")
            object.__setattr__(self, "ra", ra)
            object.__setattr__(self, "dec", dec)

    @property
    def key(self) -> str:
        if self.ra is not None and self.dec is not None:
            return f"pos:{self.ra:.7f},{self.dec:+.7f}"
        assert self.name is not None
        return "name:" + " ".join(self.name.split()).lower()

    @property
    def folder(self) -> str:
        """A safe, stable folder name for this target's files."""
        if self.label:
            return safe_filename(self.label, default="target")
        if self.name:
            return safe_filename(self.name, default="target")
        return f"{self.ra:09.5f}{self.dec:+09.5f}"

    @property
    def position(self) -> tuple[float, float] | None:
        if self.ra is None or self.dec is None:
            return None
        return (self.ra, self.dec)

    def __str__(self) -> str:
        return self.label or self.name or f"{self.ra:.5f} {self.dec:+.5f}"


def parse_target(value: Any) -> Target:
    """A Target from a Target, a SkyCoord, an (ra, dec) pair, or a line of text.

    Text: ``M51``; ``202.47 47.19``; ``202.47,47.19``; and either may be
    followed by a label (``202.47 47.19 my-field``). ``#`` starts a comment.
    """
    if isinstance(value, Target):
        return value
    if is_skycoord(value):
        ra, dec = position_degrees(value, "target")
        return Target(ra=ra, dec=dec)
    if isinstance(value, tuple | list) and len(value) in (2, 3) and not isinstance(value[0], str):
        ra, dec = position_degrees(value[:2], "target")
        label = str(value[2]) if len(value) == 3 else None
        return Target(ra=ra, dec=dec, label=label)
    if not isinstance(value, str):
        raise ParameterError(f"can't read a target from {value!r}")
    text = value.split("#", 1)[0].strip()
    if not text:
        raise ParameterError("empty target")
    parts = text.replace(",", " ").split()
    if len(parts) == 1 and _NUMBER.match(parts[0]):
        raise ParameterError(f"target {text!r}: one number is not a position; give 'ra dec'")
    if len(parts) >= 2 and _NUMBER.match(parts[0]) and _NUMBER.match(parts[1]):
        ra, dec = float(parts[0]), float(parts[1])
        if not (math.isfinite(ra) and math.isfinite(dec)):
            raise ParameterError(f"target {text!r}: position must be finite")
        label = " ".join(parts[2:]) or None
        return Target(ra=ra, dec=dec, label=label)
    return Target(name=" ".join(text.split()))


def _is_one_position(value: Any) -> bool:
    """``(ra, dec)`` or ``(ra, dec, label)`` with numbers: one target, not two or three."""
    return (
        isinstance(value, tuple | list)
        and len(value) in (2, 3)
        and all(is_number(v) for v in value[:2])
    )


async def iter_targets(source: Any) -> AsyncIterator[Target]:
    """Targets from a file (a ``pathlib.Path``), an iterable or an async iterable, lazily.

    A plain string is one target, not a file name. Blank lines and ``#``
    comments in files are skipped; a bad line is a ParameterError naming it.
    """
    if isinstance(source, os.PathLike):
        async for target in _file_targets(Path(source)):
            yield target
        return
    if _is_one_position(source):
        yield parse_target(source)
        return
    if isinstance(source, str | Target) or is_skycoord(source):
        if is_skycoord(source) and not source.isscalar:
            for coord in source:
                yield parse_target(coord)
            return
        yield parse_target(source)
        return
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield parse_target(item)
        return
    if isinstance(source, Iterable):
        for item in source:
            yield parse_target(item)
        return
    raise ParameterError(f"can't read targets from {source!r}")


#: Bytes of a targets file read in one call in a thread: thousands of lines a hop.
_BLOCK = 1 << 16


async def _file_targets(path: Path) -> AsyncIterator[Target]:
    """The targets of a file, read a block of lines at a time in a thread."""
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        raise ParameterError(f"can't read the targets file {path}: {exc}") from exc
    number = 0
    try:
        while True:
            try:
                block = await asyncio.to_thread(handle.readlines, _BLOCK)
            except OSError as exc:
                raise ParameterError(f"can't read the targets file {path}: {exc}") from exc
            if not block:
                return
            for raw in block:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ParameterError(f"{path}:{number + 1}: not UTF-8 text ({exc})") from exc
                for line in text.splitlines():  # (a lone CR ends a line too)
                    number += 1
                    if not line.split("#", 1)[0].strip():
                        continue
                    try:
                        yield parse_target(line)
                    except ParameterError as exc:
                        raise ParameterError(f"{path}:{number}: {exc}") from exc
    finally:
        await asyncio.to_thread(handle.close)
