"""The datasets of a global discovery: one per access URL or publisher DID,
however many services and targets led to it (:class:`DatasetIndex`). Read
through :mod:`voharvest.protocol.discovery`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dataset", "DatasetIndex", "Origin"]


@dataclass(frozen=True)
class Origin:
    """Where a dataset was found: a service (ivoid, kind) asked about a target."""

    ivoid: str
    kind: str
    target: int


@dataclass
class Dataset:
    """One dataset, however many services and targets led to it.

    ``access_url``: the first URL seen (``access_urls``: all of them, when the
    same publisher DID came under several); ``record``: the first record (an
    :class:`~voharvest.protocol.records.ImageRecord`), ``origins`` every
    (service, target) that found it.
    """

    access_url: str
    publisher_did: str | None
    record: Any
    access_urls: list[str] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)

    @property
    def targets(self) -> list[int]:
        return sorted({o.target for o in self.origins})

    @property
    def services(self) -> list[tuple[str, str]]:
        return sorted({(o.ivoid, o.kind) for o in self.origins})

    def getdataurl(self) -> str:
        return self.access_url

    @property
    def format(self) -> str | None:
        return getattr(self.record, "format", None)

    @property
    def title(self) -> str | None:
        return getattr(self.record, "title", None)


class DatasetIndex:
    """Datasets by access URL and by publisher DID, in the order first found."""

    def __init__(self) -> None:
        self.datasets: list[Dataset] = []
        self._by_url: dict[str, Dataset] = {}
        self._by_did: dict[str, Dataset] = {}

    def __len__(self) -> int:
        return len(self.datasets)

    def add(self, record: Any, origin: Origin) -> bool:
        """Add a record found by ``origin``; True if it is a new dataset."""
        url = record.getdataurl()
        if not url:
            return False
        did = getattr(record, "publisher_did", None) or None
        dataset = self._by_url.get(url)
        if dataset is None and did is not None:
            dataset = self._by_did.get(did)
        new = dataset is None
        if dataset is None:
            dataset = Dataset(access_url=url, publisher_did=did, record=record)
            self.datasets.append(dataset)
        if url not in self._by_url:
            self._by_url[url] = dataset
            dataset.access_urls.append(url)
        if did is not None:
            self._by_did.setdefault(did, dataset)
            if dataset.publisher_did is None:
                dataset.publisher_did = did
        if origin not in dataset.origins:
            dataset.origins.append(origin)
        return new
