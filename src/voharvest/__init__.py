"""voharvest: fast, polite, resumable harvesting of the IVOA Virtual Observatory."""

from __future__ import annotations

import logging

from ._exceptions import (
    FormatError,
    JobError,
    NoServiceError,
    OverflowWarning,
    ParameterError,
    QueryError,
    ServiceError,
    UnsupportedConstraintError,
    VOHarvestError,
    VOHarvestWarning,
)
from ._version import __version__

logging.getLogger("voharvest").addHandler(logging.NullHandler())

__all__ = [
    "FormatError",
    "JobError",
    "NoServiceError",
    "OverflowWarning",
    "ParameterError",
    "QueryError",
    "ServiceError",
    "UnsupportedConstraintError",
    "VOHarvestError",
    "VOHarvestWarning",
    "__version__",
]
