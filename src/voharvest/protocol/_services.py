"""Service kinds, and registry resources with their interfaces.

The vocabulary shared by the registry query (:mod:`.regtap`) and the answers
it brings back: which standard ids make a service kind, and how a resource's
best interface of a kind is chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._exceptions import NoServiceError, ParameterError

#: Service kinds: standard ids of the capability, then those of its auxiliary form.
#: A trailing ``%`` is a prefix pattern (ADQL LIKE), as in the RegTAP recommendation.
SERVICE_KINDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sia": (("ivo://ivoa.net/std/sia",), ("ivo://ivoa.net/std/sia#aux",)),
    "sia2": (("ivo://ivoa.net/std/sia#query-2.%",), ("ivo://ivoa.net/std/sia#query-aux-2.%",)),
    "ssa": (("ivo://ivoa.net/std/ssa",), ("ivo://ivoa.net/std/ssa#aux",)),
    "scs": (("ivo://ivoa.net/std/conesearch",), ("ivo://ivoa.net/std/conesearch#aux",)),
    "slap": (("ivo://ivoa.net/std/slap",), ("ivo://ivoa.net/std/slap#aux",)),
    "tap": (("ivo://ivoa.net/std/tap",), ("ivo://ivoa.net/std/tap#aux",)),
}

_ALIASES = {
    "image": "sia",
    "sia": "sia",
    "sia1": "sia",
    "sia2": "sia2",
    "spectrum": "ssa",
    "ssa": "ssa",
    "ssap": "ssa",
    "scs": "scs",
    "conesearch": "scs",
    "line": "slap",
    "slap": "slap",
    "table": "tap",
    "tap": "tap",
}


def resolve_servicetype(servicetype: str) -> str:
    """The service kind (``sia``, ``sia2``, ``ssa``, ``scs``, ``slap``, ``tap``) of an alias."""
    kind = _ALIASES.get(servicetype.strip().lower())
    if kind is None:
        raise ParameterError(
            f"servicetype: unknown {servicetype!r}; use one of {', '.join(sorted(_ALIASES))} "
            "or a full standard id (ivo://...)"
        )
    return kind


#: Separators of the aggregated ``interfaces`` column built by :func:`build_query`:
#: between interfaces, and between the fields of one interface.
INTERFACE_SEPARATOR = "|vh-intf|"
FIELD_SEPARATOR = "|vh|"
#: Fields of one aggregated interface, in order (the description last: free text).
INTERFACE_FIELDS = ("standard_id", "intf_type", "intf_role", "std_version", "access_url")


def _kind_of(standard_id: str) -> tuple[str | None, bool]:
    """(service kind, is auxiliary) of a standard id."""
    sid = standard_id.lower()
    for kind, (main, aux) in SERVICE_KINDS.items():
        for patterns, is_aux in ((main, False), (aux, True)):
            for pattern in patterns:
                if sid == pattern or (pattern.endswith("%") and sid.startswith(pattern[:-1])):
                    return kind, is_aux
    return None, False


@dataclass(frozen=True)
class Interface:
    """One interface of a registry resource's capability."""

    standard_id: str
    access_url: str
    type: str = ""
    role: str = ""
    description: str = ""
    version: str = ""

    @property
    def kind(self) -> str | None:
        """sia, sia2, ssa, scs, slap, tap, or None for anything else."""
        return _kind_of(self.standard_id)[0]

    @property
    def is_auxiliary(self) -> bool:
        return _kind_of(self.standard_id)[1]

    @property
    def is_standard(self) -> bool:
        return self.role.lower() == "std"

    @property
    def is_vosi(self) -> bool:
        return self.standard_id.lower().startswith("ivo://ivoa.net/std/vosi")


@dataclass(frozen=True)
class Resource:
    """A registry resource, as RegTAP describes it."""

    ivoid: str
    title: str = ""
    short_name: str = ""
    res_type: str = ""
    description: str = ""
    reference_url: str = ""
    creators: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    wavebands: tuple[str, ...] = ()
    interfaces: tuple[Interface, ...] = field(default=())

    @property
    def service_kinds(self) -> tuple[str, ...]:
        """The kinds of service this resource offers, in the order first seen."""
        kinds: dict[str, None] = {}
        for interface in self.interfaces:
            if interface.kind and interface.access_url:
                kinds.setdefault(interface.kind, None)
        return tuple(kinds)

    def interface(self, kind: str) -> Interface:
        """The best interface of a service kind (an alias such as ``image`` works too).

        Main capabilities come before auxiliary ones, standard interfaces before
        others, HTTP parameter interfaces before anything else; VOSI endpoints and
        interfaces without an access URL are never chosen.
        """
        wanted = resolve_servicetype(kind)
        candidates = [
            i for i in self.interfaces if i.kind == wanted and i.access_url and not i.is_vosi
        ]
        if not candidates:
            raise NoServiceError(
                f"{self.ivoid} has no {wanted} interface "
                f"(it offers: {', '.join(self.service_kinds) or 'none'})"
            )
        return min(
            candidates,
            key=lambda i: (i.is_auxiliary, not i.is_standard, i.type.lower() != "vs:paramhttp"),
        )

    def access_url(self, kind: str) -> str:
        """The access URL of :meth:`interface` for that kind."""
        return self.interface(kind).access_url


def _split_list(value: str, separator: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(separator) if item.strip())


def _interfaces(rows: Iterable[tuple[str, str, str, str, str, str]]) -> tuple[Interface, ...]:
    """Interfaces from (standard_id, type, role, version, access_url, description) rows;
    rows with neither a standard id nor an access URL (a capability-less resource's
    outer-join row) are dropped."""
    return tuple(
        Interface(
            standard_id=standard_id,
            access_url=access_url,
            type=intf_type,
            role=role,
            description=description,
            version=version,
        )
        for standard_id, intf_type, role, version, access_url, description in rows
        if access_url or standard_id
    )


def _interfaces_from_aggregate(text: str) -> tuple[Interface, ...]:
    rows = []
    for record in text.split(INTERFACE_SEPARATOR):
        parts = record.split(FIELD_SEPARATOR, len(INTERFACE_FIELDS))
        if len(parts) == len(INTERFACE_FIELDS) + 1:
            standard_id, intf_type, role, version, access_url, description = parts
            rows.append((standard_id, intf_type, role, version, access_url, description))
    return _interfaces(rows)


#: Column names of the parallel-list layout (used by pyvo's registry query).
_PARALLEL = ("standard_ids", "access_urls", "intf_types", "intf_roles", "cap_descriptions")
_PARALLEL_SEPARATOR = ":::py VO sep:::"


def _interfaces_from_parallel(row: Mapping[str, str]) -> tuple[Interface, ...]:
    lists = [row.get(name, "").split(_PARALLEL_SEPARATOR) for name in _PARALLEL]
    count = len(lists[1])
    ids, urls, types, roles, descriptions = (
        values + [""] * (count - len(values)) for values in lists
    )
    return _interfaces(zip(ids, types, roles, [""] * count, urls, descriptions, strict=False))


def resource_from_row(row: Mapping[str, str]) -> Resource:
    """A :class:`Resource` from one registry row (column name to text, '' for NULL).

    Understands the aggregated ``interfaces`` column of :func:`build_query` and
    the parallel ``access_urls``/``standard_ids``/... columns other clients use.
    """
    if "interfaces" in row:
        interfaces = _interfaces_from_aggregate(row["interfaces"])
    else:
        interfaces = _interfaces_from_parallel(row)
    return Resource(
        ivoid=row.get("ivoid", ""),
        title=row.get("res_title", ""),
        short_name=row.get("short_name", ""),
        res_type=row.get("res_type", ""),
        description=row.get("res_description", ""),
        reference_url=row.get("reference_url", ""),
        creators=_split_list(row.get("creator_seq", ""), ";"),
        content_types=_split_list(row.get("content_type", ""), "#"),
        wavebands=_split_list(row.get("waveband", "").lower(), "#"),
        interfaces=interfaces,
    )


def has_resource_columns(names: Iterable[str]) -> bool:
    """True if a table with these column names can be read as registry rows."""
    present = {name.lower() for name in names}
    return "ivoid" in present and ("interfaces" in present or "access_urls" in present)
