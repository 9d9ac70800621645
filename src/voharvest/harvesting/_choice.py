"""What a harvest searches and what it keeps: its services, the records it chooses from
an answer, the files a DataLink record leads to, and the names they are given."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import DataLinkError, ParameterError
from .._media import DATALINK_MIME, is_datalink_format, media_type, same_format
from ..naming import extension_for as _extension_for
from ..naming import linked_filename, record_filename, record_stem, service_folder
from ..protocol.datalink import DataLinks, Dataset, plan_datasets
from ..services import RegistryResource, SIA2Service, SIAService
from ._journal import FoundRecord, PendingRecord
from ._options import HarvestOptions
from ._targets import Target

if TYPE_CHECKING:
    from ..client import VOClient
    from ..protocol.records import ImageRecord, SIAResults

__all__ = ["HarvestedService", "choose", "linked_records", "plan", "service_of"]


@dataclass(frozen=True)
class HarvestedService:
    """A service as a harvest sees it: its journal key, label, folder and endpoint."""

    key: str
    label: str
    folder: str
    endpoint: SIAService | SIA2Service
    title: str = ""
    waveband: str = ""

    async def search(self, position: Any, options: HarvestOptions) -> SIAResults:
        sent = options.search_format
        if isinstance(self.endpoint, SIA2Service):
            ra, dec = position
            params: dict[str, Any] = {"pos": (ra, dec, options.size / 2)}
            if sent:
                # A FITS image behind a DataLink document is still a FITS image:
                # ask for those rows too (FORMAT values are OR'ed in SIA 2.0).
                wanted = [sent]
                if "/" in sent and not is_datalink_format(sent):
                    wanted.append(DATALINK_MIME)
                params["format"] = wanted
            return await self.endpoint.search(**params)
        size: Any = options.size
        if options.cutout is not None and self.cuts:
            # The service cuts its images to the search: search the cutout's box.
            width, height = options.cutout.extent
            size = width if width == height else (width, height)
        return await self.endpoint.search(position, size, format=sent)

    @property
    def cuts(self) -> bool:
        """An SIA 1.0 service of the Cutout type: its images are cut to the search."""
        return isinstance(self.endpoint, SIAService) and self.endpoint.cuts


def service_of(client: VOClient, value: Any) -> HarvestedService:
    """The service to harvest that ``value`` names (a registry resource, service or URL)."""
    title = waveband = ""
    if isinstance(value, RegistryResource):
        kinds = value.service_kinds
        kind = "sia" if "sia" in kinds else "sia2" if "sia2" in kinds else None
        if kind is None:
            raise ParameterError(f"{value.ivoid} offers no SIA service")
        endpoint = value.service(kind)
        assert isinstance(endpoint, SIAService | SIA2Service)
        label = value.short_name or value.ivoid.rsplit("/", 1)[-1]
        title, waveband = value.title, ", ".join(value.wavebands)
    elif isinstance(value, SIAService | SIA2Service):
        endpoint = value
        label = value.access_url.split("//", 1)[-1].split("/", 1)[0]
    elif isinstance(value, str):
        endpoint = SIAService(client, value)
        label = value.split("//", 1)[-1].split("/", 1)[0]
    else:
        raise ParameterError(f"can't harvest from {value!r}: give SIA services or access URLs")
    version = 2 if isinstance(endpoint, SIA2Service) else 1
    key = f"sia{version} {endpoint.access_url}"
    folder = service_folder(label, endpoint.access_url)
    return HarvestedService(key, label, folder, endpoint, title, waveband)


def _keeps(record: ImageRecord, formats: tuple[str, ...] | None) -> bool:
    if formats is None:
        return True
    mime = media_type(record.format)
    return bool(mime) and any(fnmatch.fnmatchcase(mime, pattern) for pattern in formats)


def choose(
    options: HarvestOptions,
    service: HarvestedService,
    target: Target,
    results: SIAResults,
    position: tuple[float, float],
) -> list[FoundRecord]:
    """The records of one search to download, as the journal takes them."""
    formats = options.kept_formats
    chosen: list[FoundRecord] = []
    seen: set[str] = set()
    cutout = options.cutout
    for record in results:
        url = record.getdataurl()
        links = record.datalink_url if record.is_datalink or cutout is not None else None
        if cutout is not None and service.cuts and not record.is_datalink:
            links = None  # the service cut it already: the file itself is the cutout
        cut_here = cutout is not None and service.cuts and not links
        if links:
            url = links  # resolved by a download worker
        elif not _keeps(record, formats):
            continue
        elif cutout is not None and not service.cuts and options.cutout_fallback == "skip":
            continue  # nothing to cut with, and full frames are not wanted
        if not url or url in seen:
            continue
        if not url.lower().startswith(("http://", "https://")):
            continue  # (a malformed http URL is kept: its download says what is wrong)
        seen.add(url)
        if links:  # the stem of the files it leads to
            name = record_stem(url, record.title, _extension_for(None, url))
        else:
            name = record_filename(url, record.title, record.format)
        chosen.append(
            FoundRecord(
                url=url,
                path=f"{service.folder}/{target.folder}/{name}",
                title=record.title,
                format=None if links else record.format,
                announced_size=None if links else record.filesize,
                ra=record.ra,
                dec=record.dec,
                kind="datalink" if links else "file",
                mode="cutout" if cut_here else "full",
                region=f"BOX {position[0]!r} {position[1]!r} {cutout.extent[0]!r} "
                f"{cutout.extent[1]!r}"
                if cut_here and cutout
                else None,
                # A cutout through DataLink differs per target: so does its record.
                cut_for=target.key if links and cutout is not None else "",
            )
        )
        if options.max_records and len(chosen) >= options.max_records:
            break
    return chosen


def plan(options: HarvestOptions, links: DataLinks, record: PendingRecord) -> list[Dataset]:
    """The datasets of a DataLink record's document to fetch, in the formats kept."""
    planned = plan_datasets(
        links,
        cutout=options.cutout,
        position=record.centre,
        fallback=options.cutout_fallback,
    )
    formats = options.kept_formats
    if formats is None:
        return planned
    kept = [
        d for d in planned if d.format is None or any(same_format(d.format, f) for f in formats)
    ]
    if planned and not kept:
        offered = ", ".join(sorted({d.format or "unknown type" for d in planned}))
        raise DataLinkError(
            f"the DataLink document offers {offered}, none of {', '.join(formats)}",
            url=links.url,
        )
    return kept


def linked_records(record: PendingRecord, planned: list[Dataset]) -> list[FoundRecord]:
    """The files a DataLink record led to, named after the record (its path is their stem)."""
    folder, _, stem = record.path.rpartition("/")
    return [
        FoundRecord(
            url=dataset.url,
            path=f"{folder}/{linked_filename(stem, dataset.url, dataset.format, dataset.mode)}",
            title=record.title,
            format=dataset.format,
            announced_size=None,
            ra=None,
            dec=None,
            via=dataset.via,
            mode=dataset.mode,
            region=dataset.region,
            preview=dataset.previews[0] if dataset.previews else None,
        )
        for dataset in planned
    ]
