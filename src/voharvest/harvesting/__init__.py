"""Harvests: many searches and downloads in flight, bounded, journaled, resumable.

The journal's public face is here too: ``JOURNAL_NAME`` (its file in an output
directory), :func:`open_readonly` (a read-only connection, for status, manifests
and previews) and :func:`mark_records` (correct what it believes of files, outside a
running harvest).
"""

from __future__ import annotations

from ._engine import Harvest, harvest
from ._journal import JOURNAL_NAME, JournalError, mark_records, open_readonly
from ._options import HarvestItem, HarvestOptions, HarvestTotals, UnexpectedError
from ._targets import Target, iter_targets, parse_target

__all__ = [
    "JOURNAL_NAME",
    "Harvest",
    "HarvestItem",
    "HarvestOptions",
    "HarvestTotals",
    "JournalError",
    "Target",
    "UnexpectedError",
    "harvest",
    "iter_targets",
    "mark_records",
    "open_readonly",
    "parse_target",
]
