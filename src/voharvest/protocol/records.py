"""Results and records: typed access to the rows of a parsed VO answer.

:class:`TableResults` wraps any DAL/TAP table; :class:`SIAResults` gives
:class:`ImageRecord` rows for SIA v1 (fields found by UCD, then utype) and SIA
v2 / ObsCore (fields found by ObsCore name, then utype); :class:`RegistryResults`
gives :class:`~voharvest.protocol.regtap.Resource` objects. Columns are read out
of the numpy arrays once, on first use, so iterating a large answer is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from .._exceptions import FormatError, ParameterError
from ._descriptors import ServiceDescriptor, is_datalink_format

if TYPE_CHECKING:
    from .datalink import DataLinks

from ._services import Resource, has_resource_columns, resource_from_row

__all__ = [
    "ImageRecord",
    "Record",
    "RegistryResults",
    "SIAResults",
    "TableResults",
    "sia_version",
]

# Roles of SIA 1.0 columns: UCDs (SIA 1.0 names them; UCD1+ equivalents too),
# then utype suffixes as a fallback.
_SIA1_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "access_url": (("vox:image_accessreference",), ("access.reference",)),
    "format": (("vox:image_format",), ("access.format",)),
    "title": (("vox:image_title",), ("dataid.title",)),
    "ra": (("pos_eq_ra_main", "pos.eq.ra;meta.main"), ()),
    "dec": (("pos_eq_dec_main", "pos.eq.dec;meta.main"), ()),
    "filesize": (("vox:image_filesize",), ("access.size",)),
    "dateobs": (("vox:image_mjdateobs",), ()),
    "naxes": (("vox:image_naxes",), ()),
    "naxis": (("vox:image_naxis",), ()),
    "scale": (("vox:image_scale",), ()),
    "instrument": (("inst_id",), ()),
    "bandpass_id": (("vox:bandpass_id",), ()),
    "bandpass_unit": (("vox:bandpass_unit",), ()),
    "bandpass_refvalue": (("vox:bandpass_refvalue",), ()),
    "bandpass_lolimit": (("vox:bandpass_lolimit",), ()),
    "bandpass_hilimit": (("vox:bandpass_hilimit",), ()),
}

# Roles of SIA 2.0 (ObsCore) columns: column names, then utypes.
_SIA2_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "access_url": (("access_url",), ("obscore:access.reference",)),
    "format": (("access_format",), ("obscore:access.format",)),
    "title": (("obs_title", "obs_id"), ("obscore:dataid.title",)),
    "ra": (("s_ra",), ()),
    "dec": (("s_dec",), ()),
    "filesize": (("access_estsize",), ("obscore:access.size",)),
    "dateobs": (("t_min",), ()),
    "publisher_did": (("obs_publisher_did",), ("obscore:curation.publisherdid",)),
    "dataproduct_type": (("dataproduct_type",), ("obscore:obsdataset.dataproducttype",)),
    "calib_level": (("calib_level",), ("obscore:obsdataset.caliblevel",)),
    "collection": (("obs_collection",), ()),
    "target": (("target_name",), ()),
    "instrument": (("instrument_name",), ()),
    "facility": (("facility_name",), ()),
    "em_min": (("em_min",), ()),
    "em_max": (("em_max",), ()),
    "t_min": (("t_min",), ()),
    "t_max": (("t_max",), ()),
    "s_fov": (("s_fov",), ()),
}


def _python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def sia_version(table: Table) -> int | None:
    """1 or 2 from the columns of an SIA answer, None if it is neither."""
    metas = [(name.lower(), table[name].meta) for name in table.colnames]
    if any(str(m.get("ucd") or "").lower() == "vox:image_accessreference" for _, m in metas):
        return 1
    if any(name == "access_url" for name, _ in metas):
        return 2
    if any(str(m.get("utype") or "").lower() == "obscore:access.reference" for _, m in metas):
        return 2
    return None


class TableResults(Sequence["Record"]):
    """Rows of a VOTable answer: ``len()``, iteration, indexing, ``to_table()``.

    Built on the astropy Table of the answer (column UCDs and utypes in each
    column's ``meta``), which is what a worker process hands back after
    parsing a large answer off the event loop.
    """

    def __init__(
        self,
        table: Table,
        *,
        overflow: bool = False,
        url: str | None = None,
        roles: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
        descriptors: Sequence[ServiceDescriptor] = (),
        field_ids: Mapping[str, str] | None = None,
    ) -> None:
        self._roles = roles or {}
        #: Service descriptors of the answer (e.g. where each row's DataLink document is).
        self.descriptors = tuple(descriptors)
        self._field_ids = dict(field_ids or {})
        self.table = table
        self.overflow = overflow
        self.url = url
        self._keys: dict[str, str] = {}
        for name in table.colnames:
            self._keys.setdefault(name, name)
            self._keys.setdefault(name.lower(), name)
        self._columns: dict[str, list[Any]] = {}
        self._role_keys: dict[str, str | None] = {}
        self._links: dict[int, DataLinks] = {}

    @property
    def fieldnames(self) -> list[str]:
        return list(self.table.colnames)

    def __len__(self) -> int:
        return len(self.table)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self._record(index)

    def __iter__(self) -> Iterator[Record]:
        return (self._record(i) for i in range(len(self)))

    def _record(self, index: int) -> Record:
        return Record(self, index)

    def to_table(self) -> Table:
        """The answer as an astropy Table (column names, units, masks, UCDs in ``meta``)."""
        return self.table

    def column(self, name: str) -> list[Any]:
        """The values of a column by name (case-insensitive), None where masked."""
        key = self._keys.get(name) or self._keys.get(name.lower())
        if key is None:
            raise KeyError(f"no column {name!r}; columns are {self.fieldnames}")
        return self._column(key)

    def _column(self, key: str) -> list[Any]:
        values = self._columns.get(key)
        if values is None:
            column = self.table[key]
            data = np.asarray(column)
            mask = np.ma.getmaskarray(column)
            if mask.ndim > 1:
                mask = np.asarray(mask.all(axis=tuple(range(1, mask.ndim))))
            values = [None if m else _python(v) for v, m in zip(data, mask, strict=True)]
            self._columns[key] = values
        return values

    def role_key(self, role: str) -> str | None:
        """The column playing ``role`` (access_url, format, ...) or None."""
        if role not in self._role_keys:
            self._role_keys[role] = self._find_role(role)
        return self._role_keys[role]

    def _find_role(self, role: str) -> str | None:
        if role not in self._roles:
            return None
        labels, utypes = self._roles[role]
        columns: list[tuple[str, Any]] = [
            (str(name), self.table[name].meta) for name in self.table.colnames
        ]
        for label in labels:
            for name, meta in columns:
                if str(meta.get("ucd") or "").lower() == label or name.lower() == label:
                    return name
        for utype in utypes:
            for name, meta in columns:
                value = str(meta.get("utype") or "").lower()
                if value == utype or value.endswith(":" + utype):
                    return name
        return None

    @property
    def links_descriptor(self) -> ServiceDescriptor | None:
        """The answer's DataLink ``links-1.0`` descriptor, if it has one."""
        return next((d for d in self.descriptors if d.is_links and d.access_url), None)

    def row_by_field_id(self, index: int) -> dict[str, Any]:
        r"""Row ``index`` keyed by FIELD ID and by column name (for descriptor ``ref``\s)."""
        row: dict[str, Any] = {}
        for field_id, name in self._field_ids.items():
            if name in self._keys:
                row[field_id] = self._column(self._keys[name])[index]
        for name in self.table.colnames:
            row.setdefault(name, self._column(name)[index])
        return row

    def role_value(self, role: str, index: int) -> Any:
        key = self.role_key(role)
        return None if key is None else self._column(key)[index]

    def field_unit(self, role: str) -> str:
        key = self.role_key(role)
        if key is None:
            return ""
        unit = self.table[key].unit
        return str(unit) if unit is not None else ""


class Record:
    """One row: ``record["column"]`` by name, plus the roles its results know."""

    __slots__ = ("_index", "_results")

    def __init__(self, results: TableResults, index: int) -> None:
        self._results = results
        self._index = index

    def __getitem__(self, name: str) -> Any:
        return self._results.column(name)[self._index]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        return {name: self[name] for name in self._results.fieldnames}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._index} of {self._results.url or 'answer'}>"


class ImageRecord(Record):
    """An image found by an SIA search (v1 or v2)."""

    __slots__ = ()

    def _role(self, role: str) -> Any:
        return self._results.role_value(role, self._index)

    def _text(self, role: str) -> str | None:
        value = self._role(role)
        if value is None:
            return None
        return str(value).strip() or None

    def getdataurl(self) -> str | None:
        """The URL to fetch the image (or, for some v2 services, its DataLink document)."""
        return self._text("access_url")

    @property
    def is_datalink(self) -> bool:
        """Whether the access URL returns a DataLink document rather than the data."""
        return is_datalink_format(self.format)

    @property
    def links(self) -> DataLinks | None:
        """The record's DataLink document once fetched (``VOClient.datalinks`` or a
        download of the record), with its ``#preview`` and ``#progenitor`` links."""
        return self._results._links.get(self._index)

    def keep_links(self, links: DataLinks) -> None:
        """Remember the record's DataLink document (the client does this)."""
        self._results._links[self._index] = links

    @property
    def datalink_url(self) -> str | None:
        """Where this record's DataLink document is: the access URL if it is one,
        else the answer's DataLink service descriptor filled in for this row."""
        if self.is_datalink:
            return self.getdataurl()
        descriptor = self._results.links_descriptor
        if descriptor is None:
            return None
        try:
            return descriptor.url(row=self._results.row_by_field_id(self._index))
        except ParameterError:
            return None

    @property
    def access_url(self) -> str | None:
        return self.getdataurl()

    @property
    def format(self) -> str | None:
        return self._text("format")

    @property
    def title(self) -> str | None:
        return self._text("title")

    @property
    def ra(self) -> float | None:
        value = self._role("ra")
        return float(value) if value is not None else None

    @property
    def dec(self) -> float | None:
        value = self._role("dec")
        return float(value) if value is not None else None

    @property
    def position(self) -> SkyCoord | None:
        ra, dec = self.ra, self.dec
        if ra is None or dec is None:
            return None
        return SkyCoord(ra, dec, unit="deg", frame="icrs")

    @property
    def filesize(self) -> int | None:
        """The announced size in bytes (SIA v1 file size; ObsCore's estimate in kB x 1000)."""
        value = self._role("filesize")
        if value is None:
            return None
        size = float(value)
        if size < 0:
            return None
        unit = self._results.field_unit("filesize").lower()
        if self._results_version == 2 and unit not in ("byte", "b", "bytes"):
            size *= 1000.0
        return int(size)

    @property
    def dateobs(self) -> Time | None:
        value = self._role("dateobs")
        if value is None:
            return None
        return Time(float(value), format="mjd")

    @property
    def publisher_did(self) -> str | None:
        return self._text("publisher_did")

    @property
    def dataproduct_type(self) -> str | None:
        return self._text("dataproduct_type")

    @property
    def calib_level(self) -> int | None:
        value = self._role("calib_level")
        return int(value) if value is not None else None

    @property
    def _results_version(self) -> int:
        return getattr(self._results, "version", 1)


class SIAResults(TableResults):
    """The answer of an SIA search; ``version`` is 1 or 2."""

    def __init__(
        self,
        table: Table,
        *,
        version: int,
        overflow: bool = False,
        url: str | None = None,
        descriptors: Sequence[ServiceDescriptor] = (),
        field_ids: Mapping[str, str] | None = None,
    ) -> None:
        roles = _SIA1_ROLES if version == 1 else _SIA2_ROLES
        super().__init__(
            table,
            overflow=overflow,
            url=url,
            roles=roles,
            descriptors=descriptors,
            field_ids=field_ids,
        )
        self.version = version

    def _record(self, index: int) -> ImageRecord:
        return ImageRecord(self, index)

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self._record(i) for i in range(len(self)))

    def getdataurls(self) -> list[str | None]:
        """Every record's access URL, in order."""
        key = self.role_key("access_url")
        if key is None:
            return [None] * len(self)
        return [str(v).strip() or None if v is not None else None for v in self._column(key)]


class RegistryResults(Sequence[Resource]):
    """Registry resources from a RegTAP answer."""

    def __init__(self, table: Table, *, overflow: bool = False, url: str | None = None) -> None:
        self._rows = TableResults(table, overflow=overflow, url=url)
        self.overflow = overflow
        self.url = url
        if not has_resource_columns(self._rows.fieldnames):
            raise FormatError(
                "not a registry answer: no ivoid and interface columns "
                f"(columns: {', '.join(self._rows.fieldnames)})",
                url=url,
            )
        names = [name.lower() for name in self._rows.fieldnames]
        columns = {name: self._rows.column(name) for name in names}
        self._resources = [
            resource_from_row(
                {
                    name: "" if values[i] is None else str(values[i])
                    for name, values in columns.items()
                }
            )
            for i in range(len(self._rows))
        ]

    def __len__(self) -> int:
        return len(self._resources)

    @overload
    def __getitem__(self, index: int) -> Resource: ...
    @overload
    def __getitem__(self, index: slice) -> list[Resource]: ...
    def __getitem__(self, index: int | slice) -> Resource | list[Resource]:
        return self._resources[index]

    def to_table(self) -> Table:
        return self._rows.to_table()
