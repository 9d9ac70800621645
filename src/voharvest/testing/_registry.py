"""A small RegTAP registry and a Sesame name resolver, as the embedded sky answers them.

:func:`registry_answer` is not an ADQL engine: it recognises the constraints
voharvest and pyvo write (standard ids, waveband, keywords, ivoid, TOP,
MAXREC) and answers the resources that meet them, one row each, with the
columns the query selects (:func:`answer_columns`): RegTAP 1.1 ``rr.resource``
columns and the interface aggregates of voharvest (``interfaces``) and pyvo
(``access_urls``, ...), as :func:`resource_values` gives them. The farm's other
registries answer the same way. :func:`sesame_answer` answers a name as the CDS
Sesame XML does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..protocol.regtap import FIELD_SEPARATOR, INTERFACE_SEPARATOR, RESOURCE_COLUMNS
from ._catalogue import resolve_name
from ._votables import Field, error_votable, table_votable

__all__ = [
    "RegistryEntry",
    "answer_columns",
    "answer_fields",
    "registry_answer",
    "registry_table",
    "resource_values",
    "sesame_answer",
    "sync_query",
    "sync_request_refused",
]

SIA1_ID = "ivo://ivoa.net/std/sia"
SIA2_ID = "ivo://ivoa.net/std/sia#query-2.0"
TAP_ID = "ivo://ivoa.net/std/tap"


#: What a farm registry answers when it can't read the SELECT list (or for ``*``):
#: voharvest's layout (:func:`voharvest.protocol.regtap.build_query`).
DEFAULT_COLUMNS = (*RESOURCE_COLUMNS, "interfaces")

#: The rr.resource columns every resource of a farm registry has alike.
_COMMON = {
    "content_level": "research",
    "created": "2025-01-01T00:00:00",
    "updated": "2025-01-01T00:00:00",
    "rights": "public",
    "content_type": "survey",
    "source_format": None,
    "source_value": None,
    "region_of_regard": None,
}

#: pyvo's separator in its parallel aggregates (``pyvo.registry.regtap.TOKEN_SEP``).
_PYVO_SEPARATOR = ":::py VO sep:::"

#: One interface: (standard_id, intf_type, intf_role, std_version, access_url,
#: cap_description), the order of voharvest's ``interfaces`` aggregate.
InterfaceRow = tuple[str, str, str, str, str, str]


def resource_values(
    resource: Mapping[str, object], interfaces: Sequence[InterfaceRow]
) -> dict[str, object]:
    """Every column a farm registry can answer for one resource, by name.

    ``resource``: its own rr.resource values (``ivoid``, ``res_title``, ...),
    over the ones all resources share; ``interfaces``: the ones the query
    asks for, aggregated as voharvest (``interfaces``) and pyvo
    (``access_urls``, ``standard_ids``, ...) aggregate them.
    """
    values: dict[str, object] = {**_COMMON, **resource}
    values["interfaces"] = INTERFACE_SEPARATOR.join(FIELD_SEPARATOR.join(i) for i in interfaces)
    for index, name in enumerate(
        ("standard_ids", "intf_types", "intf_roles", None, "access_urls", "cap_descriptions")
    ):
        if name is not None:
            values[name] = _PYVO_SEPARATOR.join(i[index] for i in interfaces)
    return values


def select_items(query: str) -> list[tuple[str, str]]:
    """(expression, name) of each item of the outer SELECT list, names in lower case."""
    match = re.match(
        r"\s*SELECT\s+(?:TOP\s+\d+\s+)?(?:DISTINCT\s+)?(.*?)\bFROM\b",
        query,
        re.IGNORECASE | re.DOTALL,
    )
    if match is None:
        return []
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in match.group(1):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    out = []
    for item in (i.strip() for i in items if i.strip()):
        alias = re.search(r"\s+AS\s+(\w+)\s*$", item, re.IGNORECASE)
        expression = item[: alias.start()].strip() if alias else item
        name = alias.group(1) if alias else expression.rsplit(".", 1)[-1]
        out.append((expression, name.lower()))
    return out


def answer_columns(query: str, default: Sequence[str] = DEFAULT_COLUMNS) -> list[str]:
    """The columns a query selects, in its order; ``default`` for ``SELECT *`` (or none read)."""
    names = [name for _, name in select_items(query)]
    return list(default) if not names or "*" in names else names


def answer_fields(names: Sequence[str]) -> list[Field]:
    """The FIELDs of ``names``: text, but ``region_of_regard`` (a REAL in RegTAP 1.1)."""
    return [Field(n, "double" if n == "region_of_regard" else "char") for n in names]


@dataclass(frozen=True)
class RegistryEntry:
    """One resource: who it is, what it covers, and its (standard id, version, URL) interfaces."""

    ivoid: str
    short_name: str
    title: str
    description: str
    waveband: tuple[str, ...]
    subjects: tuple[str, ...]
    interfaces: tuple[tuple[str, str, str], ...]
    reference_url: str = ""
    creator: str = "voharvest embedded sky"

    def values(self, wanted: Sequence[tuple[str, str, str]]) -> dict[str, object]:
        """Its columns (:func:`resource_values`) with the ``wanted`` interfaces."""
        own = {
            "ivoid": self.ivoid,
            "res_type": "vs:catalogservice",
            "short_name": self.short_name,
            "res_title": self.title,
            "res_description": self.description,
            "reference_url": self.reference_url,
            "creator_seq": self.creator,
            "waveband": "#".join(self.waveband),
        }
        interfaces = [
            (standard, "vs:paramhttp", "std", version, url, self.title)
            for standard, version, url in wanted
        ]
        return resource_values(own, interfaces)


_LITERAL = r"'((?:[^']|'')*)'"
_WAVEBAND = re.compile(r"ivo_hashlist_has\s*\(\s*waveband\s*,\s*" + _LITERAL, re.IGNORECASE)
_HASWORD = re.compile(r"ivo_hasword\s*\(\s*res_\w+\s*,\s*" + _LITERAL, re.IGNORECASE)
_SUBJECT = re.compile(r"res_subject\s+I?LIKE\s+" + _LITERAL, re.IGNORECASE)
_IVOID_EQ = re.compile(r"\bivoid\s*=\s*" + _LITERAL, re.IGNORECASE)
_IVOID_IN = re.compile(r"\bivoid\s+IN\s*\(\s*((?:'(?:[^']|'')*'\s*,?\s*)+)\)", re.IGNORECASE)
_STD_IN = re.compile(r"\bstandard_id\s+IN\s*\(\s*((?:'(?:[^']|'')*'\s*,?\s*)+)\)", re.IGNORECASE)
_STD_EQ = re.compile(r"\bstandard_id\s*=\s*" + _LITERAL, re.IGNORECASE)
_STD_LIKE = re.compile(r"\bstandard_id\s+I?LIKE\s+" + _LITERAL, re.IGNORECASE)
_TOP = re.compile(r"^\s*SELECT\s+TOP\s+(\d+)", re.IGNORECASE)


def sync_request_refused(params: Mapping[str, str]) -> tuple[int, bytes] | None:
    """The 400 answer to a TAP sync request our registries can't run (a REQUEST
    other than doQuery, a LANG other than ADQL), or None."""
    request = params.get("REQUEST", "doQuery")
    if request.lower() != "doquery":
        return 400, error_votable(f"REQUEST={request} is not supported; use doQuery")
    lang = params.get("LANG", "ADQL")
    if not lang.upper().startswith("ADQL"):
        return 400, error_votable(f"LANG={lang} is not supported; use ADQL")
    return None


def sync_query(params: Mapping[str, str]) -> tuple[str, tuple[int, bytes] | None]:
    """The QUERY of a TAP sync request, and the 400 answer refusing the request
    (see :func:`sync_request_refused`; an empty QUERY too) or None."""
    refused = sync_request_refused(params)
    query = params.get("QUERY", "")
    if refused is None and not query.strip():
        refused = 400, error_votable("QUERY is missing")
    return query, refused


def registry_table(
    rows: Sequence[Sequence[object]],
    query: str,
    params: Mapping[str, str],
    *,
    fields: Sequence[Field],
) -> tuple[int, bytes]:
    """The RegTAP answer of ``rows``: cut to the query's TOP, then to MAXREC (an
    OVERFLOW when MAXREC cut it), as a registry of ours answers."""
    top = _TOP.match(query)
    if top is not None:
        rows = rows[: int(top.group(1))]
    overflow = False
    maxrec = params.get("MAXREC", "").strip()
    if maxrec.isdigit() and len(rows) > int(maxrec):
        rows, overflow = rows[: int(maxrec)], True
    return 200, table_votable(fields, rows, overflow=overflow)


def _literals(pattern: re.Pattern[str], text: str) -> list[str]:
    return [match.group(1).replace("''", "'") for match in pattern.finditer(text)]


def _like(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(piece) for piece in pattern.lower().split("%"))
    return re.compile(".*".join(part.replace("_", ".") for part in parts) + r"\Z", re.DOTALL)


def _wanted_interfaces(entry: RegistryEntry, query: str) -> list[tuple[str, str, str]]:
    ids: set[str] = {i.lower() for i in _literals(_STD_EQ, query)}
    for match in _STD_IN.finditer(query):
        ids.update(i.lower() for i in _literals(re.compile(_LITERAL), match.group(1)))
    likes = [_like(p) for p in _literals(_STD_LIKE, query)]
    if not ids and not likes:
        return list(entry.interfaces)
    return [
        interface
        for interface in entry.interfaces
        if interface[0].lower() in ids or any(like.match(interface[0].lower()) for like in likes)
    ]


def _word(word: str, text: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text, re.IGNORECASE) is not None


def _matches(entry: RegistryEntry, query: str) -> bool:
    bands = {band.strip().lower() for band in _literals(_WAVEBAND, query)}
    if bands and not bands & {band.lower() for band in entry.waveband}:
        return False
    ivoids = {i.lower() for i in _literals(_IVOID_EQ, query)}
    for match in _IVOID_IN.finditer(query):
        ivoids.update(i.lower() for i in _literals(re.compile(_LITERAL), match.group(1)))
    if ivoids and entry.ivoid.lower() not in ivoids:
        return False
    # A keyword matches the title, the description or (a pattern) a subject; all keywords
    # must match: registries AND the keyword groups they are given.
    words = dict.fromkeys(w.lower() for w in _literals(_HASWORD, query))
    subjects = dict.fromkeys(_like(p) for p in _literals(_SUBJECT, query))
    text = f"{entry.title} {entry.description}"
    for word in words:
        if not _word(word, text) and not any(word in s.lower() for s in entry.subjects):
            return False
    return not (
        subjects
        and not words
        and not any(like.match(s.lower()) for like in subjects for s in entry.subjects)
    )


def registry_answer(
    entries: Sequence[RegistryEntry], params: Mapping[str, str]
) -> tuple[int, bytes]:
    """(HTTP status, VOTable) for a TAP sync request on the RegTAP tables."""
    refused = sync_request_refused(params)
    if refused is not None:
        return refused
    query = params.get("QUERY", "")
    if "rr." not in query.lower():
        return 400, error_votable("this TAP service holds only the RegTAP tables (rr.*)")
    names = answer_columns(query)
    rows = []
    for entry in entries:
        if not _matches(entry, query):
            continue
        wanted = _wanted_interfaces(entry, query)
        if wanted:
            values = entry.values(wanted)
            rows.append([values.get(name) for name in names])
    return registry_table(rows, query, params, fields=answer_fields(names))


def sesame_answer(name: str) -> bytes:
    """The Sesame XML answer for a name: its position, or "Nothing found"."""
    galaxy = resolve_name(name)
    body = f"<name>{escape(name)}</name>\n"
    if galaxy is None:
        body += "<INFO>*** Nothing found ***</INFO>\n"
    else:
        body += (
            '<Resolver name="E=embedded sky catalogue">\n'
            f"<oname>{escape(galaxy.name)}</oname>\n"
            f"<jradeg>{galaxy.ra!r}</jradeg>\n<jdedeg>{galaxy.dec!r}</jdedeg>\n"
            + "".join(f"<alias>{escape(alias)}</alias>\n" for alias in galaxy.aliases)
            + "</Resolver>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Sesame>\n<Target option="E">\n'
        + body
        + "</Target>\n</Sesame>\n"
    ).encode()
