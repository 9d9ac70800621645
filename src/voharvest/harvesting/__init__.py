"""Harvests: many searches and downloads in flight, bounded, journaled, resumable."""

from __future__ import annotations

from ._engine import (
    Harvest,
    HarvestItem,
    HarvestOptions,
    HarvestTotals,
    UnexpectedError,
    harvest,
)
from ._journal import JOURNAL_NAME, JournalError
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
    "parse_target",
]
