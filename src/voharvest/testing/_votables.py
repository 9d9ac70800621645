"""VOTable 1.3 answers of the farm: SIA v1, SIA v2 (ObsCore), RegTAP rows, errors.

Written as text (TABLEDATA), so building an answer costs microseconds and the
documents look like those of real services: a ``results`` RESOURCE, a
QUERY_STATUS INFO before the TABLE and, when MAXREC cut the answer, a trailing
OVERFLOW one after it, as DALI allows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "SIA1_FIELDS",
    "SIA2_FIELDS",
    "Field",
    "error_votable",
    "row_xml",
    "table_votable",
]

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
)


@dataclass(frozen=True)
class Field:
    """A VOTable FIELD."""

    name: str
    datatype: str = "char"
    arraysize: str | None = None
    ucd: str | None = None
    utype: str | None = None
    unit: str | None = None

    def xml(self) -> str:
        attributes = [f"name={quoteattr(self.name)}", f"datatype={quoteattr(self.datatype)}"]
        arraysize = self.arraysize or ("*" if self.datatype == "char" else None)
        for key, value in (
            ("arraysize", arraysize),
            ("ucd", self.ucd),
            ("utype", self.utype),
            ("unit", self.unit),
        ):
            if value is not None:
                attributes.append(f"{key}={quoteattr(value)}")
        return f"<FIELD {' '.join(attributes)}/>"


# SIA 1.0, section 4.2.2: columns found by UCD.
SIA1_FIELDS = (
    Field("title", ucd="VOX:Image_Title"),
    Field("ra", "double", ucd="POS_EQ_RA_MAIN", unit="deg"),
    Field("dec", "double", ucd="POS_EQ_DEC_MAIN", unit="deg"),
    Field("naxes", "int", ucd="VOX:Image_Naxes"),
    Field("naxis", "int", "2", ucd="VOX:Image_Naxis"),
    Field("scale", "double", "2", ucd="VOX:Image_Scale", unit="deg/pix"),
    Field("format", ucd="VOX:Image_Format"),
    Field("mjd_obs", "double", ucd="VOX:Image_MJDateObs", unit="d"),
    Field("instrument", ucd="INST_ID"),
    Field("bandpass_id", ucd="VOX:BandPass_ID"),
    Field("filesize", "long", ucd="VOX:Image_FileSize", unit="byte"),
    Field("access_url", ucd="VOX:Image_AccessReference"),
)

# SIA 2.0: ObsCore columns found by name.
SIA2_FIELDS = (
    Field("dataproduct_type", ucd="meta.code.class", utype="obscore:ObsDataset.dataProductType"),
    Field("calib_level", "short", ucd="meta.code;obs.calib", utype="obscore:ObsDataset.calibLevel"),
    Field("obs_collection", ucd="meta.id", utype="obscore:DataID.Collection"),
    Field("obs_id", ucd="meta.id", utype="obscore:DataID.observationID"),
    Field("obs_title", ucd="meta.title;obs", utype="obscore:DataID.Title"),
    Field("obs_publisher_did", ucd="meta.ref.ivoid", utype="obscore:Curation.PublisherDID"),
    Field("access_url", ucd="meta.ref.url", utype="obscore:Access.Reference"),
    Field("access_format", ucd="meta.code.mime", utype="obscore:Access.Format"),
    Field(
        "access_estsize",
        "long",
        ucd="phys.size;meta.file",
        utype="obscore:Access.Size",
        unit="kbyte",
    ),
    Field("target_name", ucd="meta.id;src", utype="obscore:Target.Name"),
    Field(
        "s_ra",
        "double",
        ucd="pos.eq.ra",
        utype="obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
        unit="deg",
    ),
    Field(
        "s_dec",
        "double",
        ucd="pos.eq.dec",
        utype="obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
        unit="deg",
    ),
    Field("s_fov", "double", ucd="phys.angSize;instr.fov", unit="deg"),
    Field("s_region", ucd="pos.outline;obs.field"),
    Field("s_resolution", "double", ucd="pos.angResolution", unit="arcsec"),
    Field("t_min", "double", ucd="time.start;obs.exposure", unit="d"),
    Field("t_max", "double", ucd="time.end;obs.exposure", unit="d"),
    Field("em_min", "double", ucd="em.wl;stat.min", unit="m"),
    Field("em_max", "double", ucd="em.wl;stat.max", unit="m"),
    Field("o_ucd", ucd="meta.ucd"),
    Field("facility_name", ucd="meta.id;instr.tel"),
    Field("instrument_name", ucd="meta.id;instr"),
)


def row_xml(row: Sequence[object]) -> str:
    """One TABLEDATA row as text."""
    return "<TR>" + "".join(_cell(value) for value in row) + "</TR>\n"


@functools.lru_cache(maxsize=64)
def _fields_xml(fields: tuple[Field, ...]) -> str:
    return "".join(field.xml() + "\n" for field in fields)


def _cell(value: object) -> str:
    if value is None:
        return "<TD/>"
    if isinstance(value, bool):
        return f"<TD>{'T' if value else 'F'}</TD>"
    if isinstance(value, tuple | list):
        return "<TD>" + " ".join(_scalar(item) for item in value) + "</TD>"
    return f"<TD>{_scalar(value)}</TD>"


def _scalar(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return escape(str(value))


def _info(status: str, message: str = "") -> str:
    return f'<INFO name="QUERY_STATUS" value="{status}">{escape(message)}</INFO>\n'


def table_votable(
    fields: Sequence[Field],
    rows: Iterable[Sequence[object] | str],
    *,
    overflow: bool = False,
    description: str = "",
) -> bytes:
    """A results VOTable: QUERY_STATUS=OK, one TABLE, a trailing OVERFLOW if ``overflow``.

    A row is a sequence of values, or a row already written by :func:`row_xml`.
    """
    parts = [_HEAD, '<RESOURCE type="results">\n']
    if description:
        parts.append(f"<DESCRIPTION>{escape(description)}</DESCRIPTION>\n")
    parts += [_info("OK"), "<TABLE>\n"]
    parts.append(_fields_xml(tuple(fields)))
    parts.append("<DATA><TABLEDATA>\n")
    for row in rows:
        parts.append(row if isinstance(row, str) else row_xml(row))
    parts.append("</TABLEDATA></DATA>\n</TABLE>\n")
    if overflow:
        parts.append(_info("OVERFLOW", "the answer was truncated at MAXREC"))
    parts.append("</RESOURCE>\n</VOTABLE>\n")
    return "".join(parts).encode("utf-8")


def error_votable(message: str) -> bytes:
    """A DALI error document: QUERY_STATUS=ERROR with ``message``."""
    return (
        _HEAD
        + '<RESOURCE type="results">\n'
        + _info("ERROR", message)
        + "</RESOURCE>\n</VOTABLE>\n"
    ).encode("utf-8")
