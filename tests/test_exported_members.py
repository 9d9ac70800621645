"""The public names of the package: a change here is a change of the API."""

from __future__ import annotations

import voharvest


def test_exported_members():
    assert set(voharvest.__all__) == {
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
    }
    for name in voharvest.__all__:
        assert hasattr(voharvest, name), name
