"""Results and records: typed access to the rows of a parsed VO answer.

:class:`TableResults` wraps any DAL/TAP table; :class:`SIAResults` gives
:class:`ImageRecord` rows for SIA v1 (fields found by UCD, then utype) and SIA
v2 / ObsCore (fields found by ObsCore name, then utype); :class:`RegistryResults`
gives :class:`~voharvest.protocol.regtap.Resource` objects. They are built on a
:class:`~voharvest.protocol.votable.Decoded` answer, whose columns are plain
Python values; ``to_table()`` (and a column the lean reader left to astropy)
parses the document with astropy on first use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from .._exceptions import FormatError, ParameterError
from ._descriptors import ServiceDescriptor, is_datalink_format
from ._lean import Field

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from astropy.time import Time

    from .datalink import DataLinks
    from .votable import Decoded

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


def python_value(value: Any) -> Any:
    """A cell of an astropy column as a plain Python value (arrays stay arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        return item()
    return value


def column_values(column: Any) -> list[Any]:
    """An astropy column as Python values, None where masked."""
    import numpy as np

    data = np.asarray(column)
    mask = np.ma.getmaskarray(column)
    if mask.ndim > 1:
        mask = np.asarray(mask.all(axis=tuple(range(1, mask.ndim))))
    return [None if m else python_value(v) for v, m in zip(data, mask, strict=True)]


def sia_version(fields: Sequence[Field]) -> int | None:
    """1 or 2 from the fields of an SIA answer, None if it is neither."""
    if any((f.ucd or "").lower() == "vox:image_accessreference" for f in fields):
        return 1
    if any(f.name.lower() == "access_url" for f in fields):
        return 2
    if any((f.utype or "").lower() == "obscore:access.reference" for f in fields):
        return 2
    return None


class TableResults(Sequence["Record"]):
    """Rows of a VOTable answer: ``len()``, iteration, indexing, ``to_table()``.

    Built on a decoded answer (plain columns and the fields' UCDs, utypes and
    units), which is also what a worker process hands back after parsing a
    large answer off the event loop.
    """

    def __init__(
        self,
        decoded: Decoded,
        *,
        overflow: bool = False,
        roles: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
    ) -> None:
        self._decoded = decoded
        self._roles = roles or {}
        #: Service descriptors of the answer (e.g. where each row's DataLink document is).
        self.descriptors = tuple(decoded.descriptors)
        self._field_ids = dict(decoded.field_ids)
        self.overflow = overflow
        self.url = decoded.url
        self._fields = {f.name: f for f in decoded.fields}
        self._keys: dict[str, str] = {}
        for name in self._fields:
            self._keys.setdefault(name, name)
            self._keys.setdefault(name.lower(), name)
        self._columns: dict[str, list[Any]] = {
            f.name: values
            for f, values in zip(decoded.fields, decoded.columns, strict=True)
            if values is not None
        }
        self._role_keys: dict[str, str | None] = {}
        self._links: dict[int, DataLinks] = {}
        self._table: Table | None = None

    @property
    def fieldnames(self) -> list[str]:
        return list(self._fields)

    @property
    def fields(self) -> tuple[Field, ...]:
        """The answer's FIELDs: name, datatype, unit, UCD, utype."""
        return self._decoded.fields

    def __len__(self) -> int:
        return self._decoded.rows

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
        """The answer as an astropy Table (column names, units, masks, UCDs in ``meta``),
        parsed from the document with astropy on first use."""
        if self._table is None:
            self._table = self._decoded.to_table()
        return self._table

    @property
    def table(self) -> Table:
        """The answer as an astropy Table (as :meth:`to_table`)."""
        return self.to_table()

    def column(self, name: str) -> list[Any]:
        """The values of a column by name (case-insensitive), None where null."""
        key = self._keys.get(name) or self._keys.get(name.lower())
        if key is None:
            raise KeyError(f"no column {name!r}; columns are {self.fieldnames}")
        return self._column(key)

    def _column(self, key: str) -> list[Any]:
        values = self._columns.get(key)
        if values is None:
            # A column the lean reader left to astropy (numeric arrays and the like).
            values = column_values(self.to_table()[key])
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
        fields = self._decoded.fields
        for label in labels:
            for f in fields:
                if (f.ucd or "").lower() == label or f.name.lower() == label:
                    return f.name
        for utype in utypes:
            for f in fields:
                value = (f.utype or "").lower()
                if value == utype or value.endswith(":" + utype):
                    return f.name
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
        for name in self._fields:
            row.setdefault(name, self._column(name)[index])
        return row

    def role_value(self, role: str, index: int) -> Any:
        key = self.role_key(role)
        return None if key is None else self._column(key)[index]

    def field_unit(self, role: str) -> str:
        key = self.role_key(role)
        if key is None:
            return ""
        return self._fields[key].unit or ""


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
        from astropy.coordinates import SkyCoord

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
        from astropy.time import Time

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

    def __init__(self, decoded: Decoded, *, version: int, overflow: bool = False) -> None:
        roles = _SIA1_ROLES if version == 1 else _SIA2_ROLES
        super().__init__(decoded, overflow=overflow, roles=roles)
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

    def __init__(self, decoded: Decoded, *, overflow: bool = False) -> None:
        self._rows = TableResults(decoded, overflow=overflow)
        self.overflow = overflow
        self.url = url = decoded.url
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
