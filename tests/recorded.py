"""Shared test helpers: the recorded answers of real services shipped in the pyvo wheel."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def pyvo_data_dir(package: str) -> Traversable:
    """The ``data`` folder of one of pyvo's test packages (e.g. ``pyvo.dal.tests``)."""
    return resources.files(package) / "data"


def pyvo_data(package: str, *parts: str) -> bytes:
    """The bytes of one recorded answer in pyvo's test data."""
    node = pyvo_data_dir(package)
    for part in parts:
        node = node / part
    return node.read_bytes()
