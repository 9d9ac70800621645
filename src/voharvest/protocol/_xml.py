"""The XML prolog rule every reader of a service's document applies.

A document may name an external DTD (``<!DOCTYPE VOTABLE SYSTEM
"http://us-vo.org/xml/VOTable.dtd">``, as VOTable 1.0/1.1 services and STIL's
VOTable 1.0 writer do): it is never fetched, and the document is read as if
the line were not there. What carries entity attacks is refused: an internal
subset (``<!DOCTYPE x [ ... ]>``), an entity declaration, and a reference to
any entity but XML's own five (``&lt;`` ``&gt;`` ``&amp;`` ``&apos;``
``&quot;``; character references such as ``&#233;`` are fine). Without a
document type declaration the XML parser itself refuses an undeclared entity;
with one naming an external DTD, parsers skip such a reference silently (its
text is lost), so it is looked for here.

The check reads bytes and needs an ASCII-compatible encoding (UTF-8, Latin-1),
which is what VO services send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._exceptions import FormatError

__all__ = ["Prolog", "check_prolog", "snippet"]

_SNIPPET = 200
_HEAD = 65536
# XML declaration, processing instructions, comments and white space.
_MISC = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_NAME = rb"[A-Za-z_:][\w.\-:]*"
_LITERAL = rb"(?:\"[^\"]*\"|'[^']*')"
# An external ID: SYSTEM "uri", or PUBLIC "public-id" "uri".
_EXTERNAL = rb"(?:SYSTEM\s*@|PUBLIC\s*@(?:\s*@)?)".replace(b"@", _LITERAL)
_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+(?P<name>" + _NAME + rb")(?:\s+" + _EXTERNAL + rb")?"
    rb"\s*(?P<end>[\[>])",
    re.IGNORECASE,  # (XML is case-sensitive; an HTML page's "<!doctype html>" gets a clear error)
)
_DOCTYPE_START = re.compile(rb"<!DOCTYPE\b", re.IGNORECASE)
_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?(?P<name>[A-Za-z_][\w.\-]*)")
# A named entity reference other than XML's five, outside comments and CDATA.
_ENTITY = re.compile(
    rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<!ENTITY\b|&(?!(?:lt|gt|amp|apos|quot);)(" + _NAME + rb");",
    re.DOTALL,
)


def snippet(data: bytes, length: int = _SNIPPET) -> str:
    """The start of a body as text, for error messages."""
    text = data[:length].decode("utf-8", errors="replace")
    return " ".join(text.split())


@dataclass(frozen=True)
class Prolog:
    """What comes before a document's root element."""

    #: The root element's local name (no namespace prefix).
    root: str
    #: The document type declaration, if there is one (it names only an external DTD).
    doctype: str | None = None
    #: Where the root element starts.
    offset: int = 0


def _refuse(message: str, data: bytes, url: str | None) -> FormatError:
    return FormatError(message, snippet=snippet(data), url=url)


def check_prolog(data: bytes, url: str | None = None, *, what: str = "XML document") -> Prolog:
    """The prolog of ``data``, or FormatError if it is unsafe or has no root element.

    ``what`` names the document expected, in messages. The caller checks the
    root's name (``Prolog.root``) and parses with a parser that never loads
    DTDs or resolves entities.
    """
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    head = data[start : start + _HEAD]
    if not head.strip():
        raise FormatError(f"empty answer where a {what} was due", url=url)
    position = _MISC.match(head).end()  # type: ignore[union-attr]  # (matches empty)
    doctype: str | None = None
    if _DOCTYPE_START.match(head, position):
        found = _DOCTYPE.match(head, position)
        if found is None:
            message = f"refusing a {what} with a malformed document type declaration"
            raise _refuse(message, data, url)
        if found.group("end") == b"[":
            raise _refuse(
                f"refusing a {what} whose document type declaration has an internal subset "
                "(entity declarations are not accepted)",
                data,
                url,
            )
        doctype = found.group(0).decode("ascii", errors="replace")
        position = _MISC.match(head, found.end()).end()  # type: ignore[union-attr]
        _check_entities(data, url, what)
    root = _ROOT.match(head, position)
    if root is None:
        raise _refuse(f"expected a {what}, got a non-XML answer: {snippet(data)!r}", data, url)
    return Prolog(root.group("name").decode("ascii"), doctype, start + position)


def _check_entities(data: bytes, url: str | None, what: str) -> None:
    for found in _ENTITY.finditer(data):
        token = found.group(0)
        if token.startswith(b"<!ENTITY"):
            raise _refuse(f"refusing a {what} with an entity declaration", data, url)
        if token.startswith(b"&"):
            name = found.group(1).decode("ascii", errors="replace")
            raise _refuse(
                f"refusing a {what} with a reference to the undeclared entity &{name}; "
                "(only &lt; &gt; &amp; &apos; &quot; and character references are accepted)",
                data,
                url,
            )
