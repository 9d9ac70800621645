"""What a harvest is asked to do, and what it reports: options, items and totals."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._checks import angle, count, is_number
from .._exceptions import ParameterError, VOHarvestError
from ..protocol.soda import Cutout

__all__ = ["HarvestItem", "HarvestOptions", "HarvestTotals", "UnexpectedError", "same_view"]

_NOT_GIVEN: Any = object()  # the deprecated keyword was not used


class UnexpectedError(VOHarvestError):
    """A bug, not a service's fault: an exception the harvest did not expect (see its cause)."""


def _deprecated(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)


@dataclass(frozen=True, init=False)
class HarvestOptions:
    """What to search and what to keep.

    - ``size``: search size (SIA v1 SIZE; for SIA v2 a circle of this
      diameter): degrees, a Quantity or text such as ``"2arcmin"``, in
      (0, 180] deg; kept in degrees.
    - ``search_format``: the FORMAT sent with each search (None: not sent).
    - ``keep_formats``: MIME types (shell patterns such as ``image/*`` allowed)
      of the records to keep; None keeps every record with a data URL. When
      ``search_format`` is a MIME type and ``keep_formats`` is not given,
      ``search_format`` is used.
    - ``max_records``: at most this many records per (service, target).
    - ``searches`` / ``downloads``: workers in flight (hosts still get their
      own politeness limits from the client).
    - ``cutout``: a :class:`~voharvest.Cutout` (or a radius: ``"3arcmin"``, a
      Quantity, degrees) to cut around each target instead of taking full
      frames, through the SODA service a record's DataLink document offers.
    - ``cutout_fallback``: for records that offer no cutout (no DataLink
      document, or one without a SODA service): ``full`` takes the full frame
      (the manifest says so), ``skip`` takes nothing (the journal says why).

    ``format`` and ``formats`` are the deprecated names of ``search_format``
    and ``keep_formats`` (a DeprecationWarning; they still work).

    Records whose access URL is a DataLink document are resolved to their
    dataset (the ``#this`` link; in a format of ``keep_formats`` when given) or
    to their cutout; the links document itself is never saved as the file.
    """

    size: float
    search_format: str | None
    keep_formats: tuple[str, ...] | None
    max_records: int | None
    searches: int
    downloads: int
    cutout: Cutout | None
    cutout_fallback: str

    def __init__(
        self,
        *,
        size: Any = 0.1,
        search_format: str | None = None,
        keep_formats: Any = None,
        max_records: int | None = None,
        searches: int = 32,
        downloads: int = 16,
        cutout: Any = None,
        cutout_fallback: str = "full",
        format: Any = _NOT_GIVEN,
        formats: Any = _NOT_GIVEN,
    ) -> None:
        given = dict(locals())
        for old, new in (("format", "search_format"), ("formats", "keep_formats")):
            if given[old] is not _NOT_GIVEN:
                _deprecated(f"HarvestOptions({old}=)", f"{new}=", 3)
                if given[new] is not None:
                    raise ParameterError(f"give {new} (or its old name {old}), not both")
                given[new] = given[old]
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, given[field.name])
        self._check()

    def _check(self) -> None:
        if self.cutout is not None:
            object.__setattr__(self, "cutout", Cutout.parse(self.cutout))
        if self.cutout_fallback not in ("full", "skip"):
            raise ParameterError(
                f"cutout_fallback: expected full or skip, got {self.cutout_fallback!r}"
            )
        if isinstance(self.keep_formats, str):
            object.__setattr__(self, "keep_formats", (self.keep_formats,))
        elif self.keep_formats is not None:
            object.__setattr__(self, "keep_formats", tuple(self.keep_formats))
        object.__setattr__(self, "size", angle(self.size, "size"))
        if self.max_records is not None:
            count("max_records", self.max_records)
        count("searches", self.searches)
        count("downloads", self.downloads)
        kept = self.keep_formats
        if kept is not None and not all(isinstance(f, str) and f for f in kept):
            raise ParameterError(f"keep_formats: expected MIME types, got {kept!r}")

    @property
    def kept_formats(self) -> tuple[str, ...] | None:
        """The MIME types (patterns) of the records kept, lower case; None keeps every one."""
        if self.keep_formats is not None:
            return tuple(f.lower() for f in self.keep_formats)
        if self.search_format and "/" in self.search_format:
            return (self.search_format.lower(),)
        return None

    @property
    def format(self) -> str | None:
        """Deprecated: ``search_format``."""
        _deprecated("HarvestOptions.format", "HarvestOptions.search_format", 3)
        return self.search_format

    @property
    def formats(self) -> tuple[str, ...] | None:
        """Deprecated: ``keep_formats``."""
        _deprecated("HarvestOptions.formats", "HarvestOptions.keep_formats", 3)
        return self.keep_formats

    def journal_view(self) -> dict[str, Any]:
        """The options that decide what a harvest fetches (workers don't).

        Its keys stay those of the first journals (``format``, ``formats``), so
        that the journals of earlier versions resume.
        """
        view: dict[str, Any] = {
            "size": float(self.size),
            "format": self.search_format,
            "formats": sorted(set(self.kept_formats)) if self.kept_formats else None,
            "max_records": self.max_records,
        }
        cutout = self.cutout
        if cutout is not None:  # (journals of harvests without cutouts stay as they were)
            view["cutout"] = {
                "radius": cutout.radius,
                "width": cutout.width,
                "height": cutout.height,
                "band": list(cutout.band) if cutout.band else None,
            }
            view["cutout_fallback"] = self.cutout_fallback
        return view

    def resumes(self, kept: Any) -> bool:
        """Whether a harvest journaled with the view ``kept`` is this one (:func:`same_view`)."""
        return same_view(kept, self.journal_view())


#: Numbers of two journal views are the same within this relative tolerance: far above the
#: last bits a float loses on the way (ulps, ~1e-16), far below any angle a service tells
#: apart (1e-9 of 0.2 deg is 0.7 micro-arcseconds).
SAME_WITHIN = 1e-9


def same_view(kept: Any, wanted: Any) -> bool:
    """Whether two :meth:`HarvestOptions.journal_view` values ask for the same harvest.

    ``kept`` is what a journal (or a plan) holds, read back from JSON. Compared
    as values, not as text: angles are kept in degrees, and one angle given two
    ways (``"111arcmin"`` and ``1.85``) can differ in the last bits of its float;
    the first journals wrote a whole-degree size as an int (``1`` for ``1.0``)
    and ``formats`` in the order given. So numbers are the same within
    :data:`SAME_WITHIN` (whole numbers exactly), ``formats`` is a set, and
    everything else must be equal.
    """
    if not isinstance(kept, Mapping) or not isinstance(wanted, Mapping):
        return False
    if kept.keys() != wanted.keys():
        return False
    for key, old in kept.items():
        new = wanted[key]
        if key == "formats" and _sequence(old) and _sequence(new):
            if sorted(set(old)) != sorted(set(new)):
                return False
        elif not _same_value(old, new):
            return False
    return True


def _sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _same_value(old: Any, new: Any) -> bool:
    if is_number(old) and is_number(new):
        if isinstance(old, int) and isinstance(new, int):
            return bool(old == new)
        return math.isclose(old, new, rel_tol=SAME_WITHIN)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same_value(old[k], new[k]) for k in old)
    if _sequence(old) and _sequence(new):
        return len(old) == len(new) and all(map(_same_value, old, new))
    return type(old) is type(new) and bool(old == new)


@dataclass(frozen=True)
class HarvestItem:
    """One finished piece of work: a search or a download, succeeded or failed.

    ``found_on_disk``: the file was complete under its name already (an
    earlier run fetched it), so it was not fetched again. ``nothing_to_cut``:
    a DataLink record offered no cutout and ``cutout_fallback`` is ``skip``,
    so nothing was taken. ``skipped`` (deprecated) is either.
    """

    kind: Literal["search", "download"]
    service: str
    target: str
    url: str | None = None
    path: Path | None = None
    records: int = 0
    bytes: int = 0
    found_on_disk: bool = False
    error: VOHarvestError | None = None
    nothing_to_cut: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def skipped(self) -> bool:
        """Deprecated: ``found_on_disk or nothing_to_cut``."""
        _deprecated("HarvestItem.skipped", "found_on_disk or nothing_to_cut", 3)
        return self.found_on_disk or self.nothing_to_cut


@dataclass
class HarvestTotals:
    """Counts per service so far (a live view).

    ``found_on_disk`` and ``nothing_to_cut`` count the items so marked (see
    :class:`HarvestItem`); ``skipped`` (deprecated) is their sum.
    """

    searches: int = 0
    searches_failed: int = 0
    records: int = 0
    downloads: int = 0
    downloads_failed: int = 0
    found_on_disk: int = 0
    bytes: int = 0
    nothing_to_cut: int = 0

    @property
    def skipped(self) -> int:
        """Deprecated: ``found_on_disk + nothing_to_cut``."""
        _deprecated("HarvestTotals.skipped", "found_on_disk + nothing_to_cut", 3)
        return self.found_on_disk + self.nothing_to_cut
