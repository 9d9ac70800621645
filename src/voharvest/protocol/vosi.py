"""VOSI capabilities: which security methods each interface of a service accepts.

A VOSI capabilities document (IVOA VOSI 1.1, section 3.1; the elements are
VOResource's ``capability`` / ``interface`` / ``accessURL`` /
``securityMethod``) lists the interfaces of a service with their access URLs;
an interface without ``securityMethod`` is anonymous, otherwise each
``securityMethod/@standardID`` names a method it accepts (IVOA SSO:
``ivo://ivoa.net/sso#BasicAA``, ``#tls-with-certificate``, ``#cookie``,
``#token``). Services such as CADC's list one interface per method for the
same URL, the anonymous one among them when anonymous access is allowed.

Pure: bytes in, :class:`AccessRule` values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from .._exceptions import FormatError

__all__ = ["ANONYMOUS", "AccessRule", "parse_capabilities"]

#: The method of an interface that names none.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class AccessRule:
    """The methods accepted at ``url``: a prefix (``use="base"``) or ``exact`` (``full``)."""

    url: str
    methods: frozenset[str]
    exact: bool = False


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def parse_capabilities(data: bytes, url: str | None = None) -> list[AccessRule]:
    """One :class:`AccessRule` per access URL of every interface (methods merged)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except (etree.LxmlError, ValueError) as exc:
        raise FormatError(
            f"not a VOSI capabilities document: {exc}",
            snippet=data[:200].decode(errors="replace"),
            url=url,
        ) from exc
    if _local(root.tag) != "capabilities":
        raise FormatError(f"expected <capabilities>, got <{_local(root.tag)}>", url=url)
    merged: dict[tuple[str, bool], set[str]] = {}
    for interface in root.iter():
        if _local(interface.tag) != "interface":
            continue
        methods = {
            (child.get("standardID") or ANONYMOUS).strip()
            for child in interface
            if _local(child.tag) == "securityMethod"
        } or {ANONYMOUS}
        for child in interface:
            if _local(child.tag) == "accessURL" and (child.text or "").strip():
                key = ((child.text or "").strip(), child.get("use") == "full")
                merged.setdefault(key, set()).update(methods)
    return [AccessRule(u, frozenset(m), exact) for (u, exact), m in merged.items()]
