"""TAP requests and UWS job documents, without I/O.

This is the sans-I/O half of TAP (Table Access Protocol): it builds the form
fields of a query and reads the XML documents a service returns about an
asynchronous job, but never sends or receives anything itself. The client
posts the fields, fetches the documents and calls these functions on the bytes.

* :func:`sync_fields` / :func:`async_fields` -- the ``(name, value)`` pairs of a
  ``POST`` to ``{tap}/sync`` or ``{tap}/async``.
* :func:`parse_job` -- a UWS 1.0 or 1.1 job document (``GET {tap}/async/{id}``)
  to a frozen :class:`Job`; :func:`result_url` picks the result to download.
* :func:`parse_phase` -- the plain-text answer of ``GET {tap}/async/{id}/phase``.

Anything that isn't a well-formed UWS job -- an HTML error page, a truncated
body, an unknown phase, an XML document with an internal DTD subset or an
entity -- raises :class:`~voharvest.FormatError` carrying the start of the body
as ``snippet``. XML is parsed with entity expansion, DTD loading and network
access all off; a DOCTYPE that only names an external DTD is allowed (never
fetched), as for every XML reader here.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from lxml import etree

from .._exceptions import FormatError, ParameterError
from ._xml import check_prolog

__all__ = [
    "ACTIVE_PHASES",
    "FINAL_PHASES",
    "PHASES",
    "UWS_NS",
    "ErrorSummary",
    "Job",
    "JobResult",
    "async_fields",
    "parse_job",
    "parse_phase",
    "result_url",
    "sync_fields",
]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
"""The namespace of UWS 1.0 and of UWS 1.1 (which kept it)."""
_UWS_NS_PREFIX = "http://www.ivoa.net/xml/UWS/"  # tolerate a mistaken "/v1.1"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

PHASES: tuple[str, ...] = (
    "PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR",
    "ABORTED", "UNKNOWN", "HELD", "SUSPENDED", "ARCHIVED",
)  # fmt: skip
"""Every execution phase of UWS 1.1 (UWS 1.0 lacks only ARCHIVED)."""
FINAL_PHASES = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})
"""Phases a job never leaves: polling can stop."""
ACTIVE_PHASES = frozenset({"QUEUED", "EXECUTING"})
"""Phases in which the service runs, or will run, the job without being asked."""

_SNIPPET_CHARS = 200


# -- requests -------------------------------------------------------------------------------


def sync_fields(
    query: str,
    *,
    maxrec: int | None = None,
    format: str | None = None,
    lang: str = "ADQL",
) -> list[tuple[str, str]]:
    """The form fields of a TAP query, to ``POST`` to ``{tap}/sync``.

    ``format`` (a MIME type or short name such as ``"votable"``) is sent as both
    ``RESPONSEFORMAT`` (TAP 1.1) and ``FORMAT`` (TAP 1.0), and only when given.
    ``maxrec`` is sent whenever it isn't None -- ``MAXREC=0`` is meaningful: it
    asks for the table's metadata without rows.

    Raises :class:`~voharvest.ParameterError` for an empty query or language, an
    empty format, or a ``maxrec`` that isn't a non-negative integer.
    """
    if not isinstance(query, str) or not query.strip():
        raise ParameterError("a TAP query must be a non-empty string")
    if not isinstance(lang, str) or not lang.strip():
        raise ParameterError("the query language (lang) must be a non-empty string")
    fields = [("REQUEST", "doQuery"), ("LANG", lang), ("QUERY", query)]
    if format is not None:
        if not isinstance(format, str) or not format.strip():
            raise ParameterError(f"format must be a non-empty string, not {format!r}")
        fields += [("RESPONSEFORMAT", format), ("FORMAT", format)]
    if maxrec is not None:
        fields.append(("MAXREC", str(_check_maxrec(maxrec))))
    return fields


def async_fields(
    query: str,
    *,
    maxrec: int | None = None,
    format: str | None = None,
    lang: str = "ADQL",
    run: bool = False,
) -> list[tuple[str, str]]:
    """The form fields that create a TAP job, to ``POST`` to ``{tap}/async``.

    The same fields as :func:`sync_fields`. With ``run=True`` they end with
    ``PHASE=RUN``, which creates *and starts* the job in one request; use it
    unless you want to change the job first (its ``DESTRUCTION`` or
    ``EXECUTIONDURATION``, say) and start it later with ``PHASE=RUN`` posted
    to ``{job}/phase``. Without it the job waits in phase PENDING.
    """
    fields = sync_fields(query, maxrec=maxrec, format=format, lang=lang)
    if run:
        fields.append(("PHASE", "RUN"))
    return fields


def _check_maxrec(maxrec: int) -> int:
    if isinstance(maxrec, bool):
        raise ParameterError(f"maxrec must be an integer, not {maxrec!r}")
    try:
        value = operator.index(maxrec)  # int and integer-like types (numpy), not float
    except TypeError:
        raise ParameterError(f"maxrec must be an integer, not {maxrec!r}") from None
    if value < 0:
        raise ParameterError(f"maxrec must not be negative, not {value}")
    return value


# -- UWS job documents ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobResult:
    """One result of a job: its ``id`` and the URL (``xlink:href``) to fetch it from."""

    id: str
    href: str


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    """Why a job failed: the service's ``message``, its ``type`` (``"fatal"`` or
    ``"transient"``, ``""`` if not given) and whether ``{job}/error`` has more."""

    message: str
    type: str = ""
    has_detail: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A UWS job as its document describes it at one moment.

    ``phase`` is upper-case and one of :data:`PHASES`. Times are aware
    datetimes in UTC (a time without an offset is taken as UTC). ``parameters``
    keeps the document's order; values are stripped of surrounding white space
    and an empty or nil parameter has the value ``""``.
    """

    job_id: str
    run_id: str | None = None
    owner_id: str | None = None
    phase: str
    quote: datetime | None = None
    creation_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    execution_duration: int | None = None
    destruction: datetime | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    results: tuple[JobResult, ...] = ()
    error_summary: ErrorSummary | None = None

    @property
    def is_final(self) -> bool:
        """True once the job can't change any more (COMPLETED, ERROR, ABORTED, ARCHIVED)."""
        return self.phase in FINAL_PHASES

    @property
    def is_active(self) -> bool:
        """True while the service runs or has queued the job (QUEUED, EXECUTING).

        PENDING and HELD jobs wait for someone to act; SUSPENDED and UNKNOWN
        ones are neither active nor final.
        """
        return self.phase in ACTIVE_PHASES


def result_url(job: Job, result_id: str = "result") -> str | None:
    """The URL of the job's result called ``result_id``, for downloading it.

    TAP names the query's table ``result``, but many services call it
    something else (``resultsTable``, ``votable``, a file name): when no result
    has that id the first result is taken. None when the job has no results.
    """
    for result in job.results:
        if result.id == result_id:
            return result.href
    return job.results[0].href if job.results else None


def parse_phase(data: bytes, *, url: str | None = None) -> str:
    """The phase from the plain-text body of ``GET {job}/phase``, upper-case.

    Raises :class:`~voharvest.FormatError` when it isn't one of :data:`PHASES`.
    """
    text = data.decode("utf-8-sig", errors="replace").strip()
    phase = text.upper()
    if phase not in PHASES:
        raise FormatError(f"not a UWS phase: {text[:60]!r}", snippet=_snippet(data), url=url)
    return phase


def parse_job(data: bytes, *, url: str | None = None) -> Job:
    """Parse a UWS 1.0 / 1.1 job document (prefixed or default namespace) into a :class:`Job`.

    ``url`` only goes into error messages. Elements the job model doesn't cover
    (``jobInfo``, extensions) are ignored. Raises :class:`~voharvest.FormatError`
    for anything that isn't a valid job document: not XML, a DTD subset or entity, another
    root element, a missing ``jobId`` or ``phase``, an unknown phase, a bad time
    or duration, a result without ``id`` or ``xlink:href``.
    """
    reader = _Reader(data, url)
    root, ns = reader.root, reader.ns
    phase_text = reader.text(root.find(ns + "phase"))
    if not phase_text:
        reader.fail("the UWS job document has no phase")
    phase = phase_text.upper()
    if phase not in PHASES:
        reader.fail(f"the UWS job document has an unknown phase {phase_text[:60]!r}")
    job_id = reader.text(root.find(ns + "jobId"))
    if not job_id:
        reader.fail("the UWS job document has no jobId")

    parameters = []
    for elem in root.iterfind(f"{ns}parameters/{ns}parameter"):
        name = elem.get("id")
        if not name:
            reader.fail("a UWS job parameter has no id")
        parameters.append((name, reader.text(elem) or ""))
    results = []
    for elem in root.iterfind(f"{ns}results/{ns}result"):
        rid, href = elem.get("id"), elem.get(f"{{{_XLINK_NS}}}href")
        if not rid or not href:
            reader.fail("a UWS job result has no id or no xlink:href")
        results.append(JobResult(rid, href))
    error_summary = None
    elem = root.find(ns + "errorSummary")
    if elem is not None:
        error_summary = ErrorSummary(
            message=reader.text(elem.find(ns + "message")) or "",
            type=(elem.get("type") or "").strip(),
            has_detail=(elem.get("hasDetail") or "").strip().lower() in ("true", "1"),
        )

    return Job(
        job_id=job_id,
        run_id=reader.text(root.find(ns + "runId")),
        owner_id=reader.text(root.find(ns + "ownerId")),
        phase=phase,
        quote=reader.time("quote"),
        creation_time=reader.time("creationTime"),
        start_time=reader.time("startTime"),
        end_time=reader.time("endTime"),
        execution_duration=reader.duration("executionDuration"),
        destruction=reader.time("destruction"),
        parameters=tuple(parameters),
        results=tuple(results),
        error_summary=error_summary,
    )


class _Reader:
    """The parsed root of a job document, with helpers that fail with context."""

    def __init__(self, data: bytes, url: str | None) -> None:
        self.data, self.url = data, url
        if not data.strip():
            self.fail("empty body where a UWS job document was expected")
        # An external DTD may be named (never loaded); internal subsets and entities are refused.
        try:
            check_prolog(data, url, what="UWS job document")
        except FormatError as exc:
            self.fail(exc.message)
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        try:
            root = etree.fromstring(data, parser)
        except (etree.LxmlError, ValueError) as exc:
            self.fail(f"not an XML document (a UWS job was expected): {exc}")
        qname = etree.QName(root)
        namespace = qname.namespace
        if qname.localname != "job" or not (
            namespace is None or namespace.startswith(_UWS_NS_PREFIX)
        ):
            self.fail(f"not a UWS job document: the root element is {root.tag!r}")
        self.root = root
        self.ns = f"{{{namespace}}}" if namespace else ""

    def fail(self, message: str) -> NoReturn:
        raise FormatError(message, snippet=_snippet(self.data), url=self.url)

    def text(self, elem: etree._Element | None) -> str | None:
        """The stripped text of ``elem``; None when missing, nil or empty."""
        if elem is None or (elem.get(_XSI_NIL) or "").strip() in ("true", "1"):
            return None
        return "".join(elem.itertext()).strip() or None

    def time(self, name: str) -> datetime | None:
        text = self.text(self.root.find(self.ns + name))
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"the UWS job's {name} isn't an ISO 8601 time: {text[:60]!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def duration(self, name: str) -> int | None:
        text = self.text(self.root.find(self.ns + name))
        if text is None:
            return None
        try:
            return int(float(text))  # "600.0" from some services; inf and nan fail
        except (ValueError, OverflowError):
            self.fail(f"the UWS job's {name} isn't a number of seconds: {text[:60]!r}")


def _snippet(data: bytes) -> str:
    return data[: _SNIPPET_CHARS * 4].decode("utf-8", errors="replace")[:_SNIPPET_CHARS]
