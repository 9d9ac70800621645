"""Tests of voharvest.protocol.tap: TAP form fields and UWS job documents.

The UWS job files pyvo ships are parsed by both parsers; pyvo is the oracle.
"""

from __future__ import annotations

import ast
import importlib.resources
import inspect
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import pyvo.io.uws
from pyvo.dal.tap import TAPQuery

from voharvest._exceptions import FormatError, ParameterError
from voharvest.protocol import tap
from voharvest.protocol.tap import (
    PHASES,
    ErrorSummary,
    Job,
    JobResult,
    async_fields,
    parse_job,
    parse_phase,
    result_url,
    sync_fields,
)

PYVO_DATA = importlib.resources.files("pyvo.io.uws.tests") / "data"
PYVO_JOB_FILES = sorted(
    (entry for entry in PYVO_DATA.iterdir() if entry.name.endswith(".xml")),
    key=lambda entry: entry.name,
)
UWS = "http://www.ivoa.net/xml/UWS/v1.0"


def pyvo_file(name: str) -> bytes:
    return (PYVO_DATA / name).read_bytes()


def job_doc(body: str, *, tag: str = "job", ns: str = UWS, job_id: str = "j1") -> bytes:
    """A small default-namespace job document around ``body``."""
    return (
        f'<?xml version="1.0"?>\n<{tag} xmlns="{ns}" xmlns:xlink="http://www.w3.org/1999/xlink"'
        f' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<jobId>{job_id}</jobId>{body}</{tag}>"
    ).encode()


# -- pyvo's job files, with pyvo as the oracle ------------------------------------------------


def test_pyvo_ships_the_job_files_we_rely_on() -> None:
    names = {entry.name for entry in PYVO_JOB_FILES}
    assert {"job.xml", "job-error.xml", "job-implicit-v1.0.xml"} <= names


@pytest.mark.parametrize("entry", PYVO_JOB_FILES, ids=lambda entry: entry.name)
def test_pyvo_job_files_agree_with_pyvo(entry: importlib.resources.abc.Traversable) -> None:
    data = entry.read_bytes()
    ours = parse_job(data)
    theirs = pyvo.io.uws.parse_job(io.BytesIO(data))

    assert ours.phase == theirs.phase.strip().upper()
    assert ours.job_id == theirs.jobid
    assert ours.owner_id == theirs.ownerid
    assert [(r.id, r.href) for r in ours.results] == [(r.id_, r.href) for r in theirs.results]
    assert ours.parameters == tuple((p.id_, p.content or "") for p in theirs.parameters)
    if theirs.errorsummary is None:
        assert ours.error_summary is None
    else:
        assert ours.error_summary is not None
        assert ours.error_summary.message == theirs.errorsummary.message.content
        assert ours.error_summary.type == theirs.errorsummary.type_
        assert ours.error_summary.has_detail == bool(theirs.errorsummary.has_detail)
    if theirs.executionduration is None:
        assert ours.execution_duration is None
    else:
        assert ours.execution_duration == int(theirs.executionduration.sec)
    # pyvo's astropy Times are UTC without a time zone; ours are aware UTC datetimes
    for mine, other in [
        (ours.quote, theirs.quote),
        (ours.creation_time, theirs.creationtime),
        (ours.start_time, theirs.starttime),
        (ours.end_time, theirs.endtime),
        (ours.destruction, theirs.destruction),
    ]:
        if other is None:
            assert mine is None
        else:
            assert mine is not None and mine.tzinfo is UTC
            assert mine.replace(tzinfo=None) == other.datetime


def test_pinned_job_error_xml() -> None:
    job = parse_job(pyvo_file("job-error.xml"), url="http://example.com/tap/async/1337")
    assert job.phase == "ERROR"
    assert job.error_summary == ErrorSummary("We have problem", "fatal", False)
    assert job.is_final and not job.is_active
    assert job.results == ()
    assert result_url(job) is None


def test_pinned_job_xml() -> None:
    job = parse_job(pyvo_file("job.xml"))
    assert job.job_id == "1337"
    assert job.phase == "COMPLETED"
    assert job.owner_id is None  # xsi:nil="true"
    assert job.creation_time == datetime(2018, 1, 1, tzinfo=UTC)
    assert job.start_time == datetime(2018, 1, 1, 0, 5, tzinfo=UTC)
    assert job.execution_duration == 7200
    assert ("lang", "ADQL") in job.parameters
    assert ("maxrec", "") in job.parameters
    assert job.error_summary is None
    assert result_url(job) == "http://example.com/tap/async/1337/results/result"


def test_result_url_falls_back_to_first_result() -> None:
    job = parse_job(pyvo_file("job-implicit-v1.0.xml"))  # default namespace, no uws: prefix
    assert [r.id for r in job.results] == ["resultsTable"]
    assert result_url(job) == "http://example.com/tap/async/1234/results/result"


def test_result_url_prefers_the_named_result() -> None:
    job = Job(
        job_id="x",
        phase="COMPLETED",
        results=(JobResult("log", "http://h/log"), JobResult("result", "http://h/table")),
    )
    assert result_url(job) == "http://h/table"
    assert result_url(job, "log") == "http://h/log"
    assert result_url(job, "missing") == "http://h/log"


# -- hand-written job documents -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-01-01T12:00:00Z", datetime(2018, 1, 1, 12, tzinfo=UTC)),
        ("2018-01-01T12:00:00", datetime(2018, 1, 1, 12, tzinfo=UTC)),
        ("2018-01-01T12:00:00.250Z", datetime(2018, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2018-01-01T12:00:00.123456789Z", datetime(2018, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2018-01-01T00:30:00+01:00", datetime(2017, 12, 31, 23, 30, tzinfo=UTC)),
        ("2018-01-01T12:00:00.5-05:00", datetime(2018, 1, 1, 17, 0, 0, 500000, tzinfo=UTC)),
        ("  2018-01-01T12:00:00Z\n", datetime(2018, 1, 1, 12, tzinfo=UTC)),
    ],
)
def test_times_are_tolerant_iso8601_in_utc(text: str, expected: datetime) -> None:
    job = parse_job(job_doc(f"<phase>EXECUTING</phase><startTime>{text}</startTime>"))
    assert job.start_time == expected
    assert job.start_time is not None and job.start_time.tzinfo is UTC


def test_nil_and_missing_values() -> None:
    job = parse_job(
        job_doc(
            '<runId xsi:nil="true"/><phase>PENDING</phase><quote xsi:nil="true"/>'
            '<parameters><parameter id="maxrec" xsi:nil="true"/><parameter id="q"/>'
            '<parameter id="lang"> ADQL </parameter></parameters>'
        )
    )
    assert job.run_id is None and job.owner_id is None and job.quote is None
    assert job.execution_duration is None and job.results == () and job.error_summary is None
    assert job.parameters == (("maxrec", ""), ("q", ""), ("lang", "ADQL"))
    assert not job.is_final and not job.is_active


def test_prefixed_document_with_run_id_and_error_detail() -> None:
    data = (
        f'<uws:job xmlns:uws="{UWS}" xmlns:xlink="http://www.w3.org/1999/xlink">'
        "<uws:jobId>a7</uws:jobId><uws:runId>my-run</uws:runId><uws:ownerId>ann</uws:ownerId>"
        "<uws:phase>aborted</uws:phase><uws:executionDuration>600.0</uws:executionDuration>"
        '<uws:results><uws:result id="r" xlink:href="http://h/r"/></uws:results>'
        '<uws:errorSummary type="transient" hasDetail="true">'
        "<uws:message>  time limit reached </uws:message></uws:errorSummary></uws:job>"
    ).encode()
    job = parse_job(data)
    assert (job.job_id, job.run_id, job.owner_id, job.phase) == ("a7", "my-run", "ann", "ABORTED")
    assert job.execution_duration == 600
    assert job.results == (JobResult("r", "http://h/r"),)
    assert job.error_summary == ErrorSummary("time limit reached", "transient", True)


@pytest.mark.parametrize("phase", PHASES)
def test_final_and_active_phases(phase: str) -> None:
    job = parse_job(job_doc(f"<phase>{phase.lower()}</phase>"))
    assert job.phase == phase
    assert job.is_final == (phase in {"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})
    assert job.is_active == (phase in {"QUEUED", "EXECUTING"})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (job_doc("<quote>soon</quote>"), "no phase"),
        (job_doc("<phase>  </phase>"), "no phase"),
        (job_doc("<phase>RUNNING</phase>"), "'RUNNING'"),
        (job_doc("<phase>COMPLETED</phase>", job_id=""), "no jobId"),
        (job_doc("<phase>QUEUED</phase><startTime>yesterday</startTime>"), "'yesterday'"),
        (job_doc("<phase>QUEUED</phase><executionDuration>1h</executionDuration>"), "'1h'"),
        (job_doc('<phase>COMPLETED</phase><results><result id="r"/></results>'), "href"),
        (job_doc("<phase>QUEUED</phase><parameters><parameter>1</parameter></parameters>"), "id"),
        (job_doc("<phase>QUEUED</phase>", tag="jobs"), "root element"),
        (job_doc("<phase>QUEUED</phase>", ns="urn:not-uws"), "root element"),
    ],
)
def test_invalid_job_documents(data: bytes, fragment: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_job(data, url="http://h/async/j1")
    assert fragment in info.value.message
    assert info.value.url == "http://h/async/j1"
    assert info.value.snippet == data.decode()[:200]


def test_job_without_namespace_is_accepted() -> None:
    data = b"<job><jobId>plain</jobId><phase>QUEUED</phase></job>"
    job = parse_job(data)
    assert (job.job_id, job.phase, job.is_active) == ("plain", "QUEUED", True)


# -- hostile and broken bodies -------------------------------------------------------------


def test_billion_laughs_is_refused_fast() -> None:
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    data = (
        f'<?xml version="1.0"?><!DOCTYPE job [{entities}]><job xmlns="{UWS}">'
        "<jobId>&l9;</jobId><phase>COMPLETED</phase></job>"
    ).encode()
    start = time.perf_counter()
    with pytest.raises(FormatError) as info:
        parse_job(data)
    assert time.perf_counter() - start < 1.0
    assert "lol" * 100 not in str(info.value) + info.value.snippet


def test_an_internal_subset_is_refused_even_harmless() -> None:
    data = (
        f'<!DOCTYPE job [<!ENTITY who "me">]><job xmlns="{UWS}">'
        "<jobId>1</jobId><ownerId>&who;</ownerId><phase>QUEUED</phase></job>"
    ).encode()
    with pytest.raises(FormatError, match="internal subset"):
        parse_job(data)


@pytest.mark.parametrize("use_passwd", [False, True], ids=["tmpfile", "etc-passwd"])
def test_external_entity_is_never_read(tmp_path: Path, use_passwd: bool) -> None:
    secret = "s3cret-marker-7f2c"
    target = tmp_path / "secret.txt"
    target.write_text(secret)
    uri = "file:///etc/passwd" if use_passwd else target.as_uri()
    data = (
        f'<?xml version="1.0"?><!DOCTYPE job [<!ENTITY x SYSTEM "{uri}">]>'
        f'<job xmlns="{UWS}"><jobId>&x;</jobId><phase>COMPLETED</phase></job>'
    ).encode()
    with pytest.raises(FormatError) as info:
        parse_job(data)
    shown = f"{info.value} {info.value.snippet}"
    assert secret not in shown
    assert "root:" not in shown


def test_external_dtd_is_named_only_never_loaded() -> None:
    data = f'<!DOCTYPE job SYSTEM "http://127.0.0.1:9/uws.dtd"><job xmlns="{UWS}"/>'.encode()
    with pytest.raises(FormatError, match="no phase"):  # read without the DTD: no phase
        parse_job(data)


def test_html_error_page_gives_snippet() -> None:
    body = (
        b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>"
        + b"<p>upstream went away</p>" * 50
        + b"</body></html>"
    )
    with pytest.raises(FormatError) as info:
        parse_job(body, url="http://h/tap/async/9")
    assert info.value.snippet == body.decode()[:200]
    assert "502 Bad Gateway" in info.value.snippet
    assert "http://h/tap/async/9" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><h1>Service unavailable</h1></body></html>",
        b"Internal Server Error\nTraceback (most recent call last): ...",
        b"<job xmlns='" + UWS.encode() + b"'><jobId>1</jobId><phase>COMP",
        "<p>caf\u00e9</p>".encode("latin-1"),
    ],
)
def test_not_a_job_document(body: bytes) -> None:
    with pytest.raises(FormatError) as info:
        parse_job(body)
    assert info.value.snippet == body.decode("utf-8", errors="replace")[:200]


@pytest.mark.parametrize("body", [b"", b"  \r\n\t"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(FormatError, match="empty"):
        parse_job(body)


# -- the /phase endpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_parse_phase_round_trips(phase: str) -> None:
    assert parse_phase(f" {phase.lower()}\r\n".encode()) == phase


def test_parse_phase_with_bom() -> None:
    assert parse_phase(b"\xef\xbb\xbfEXECUTING\n") == "EXECUTING"


@pytest.mark.parametrize("body", [b"RUNNING", b"", b"<html><body>busy</body></html>"])
def test_parse_phase_rejects(body: bytes) -> None:
    with pytest.raises(FormatError) as info:
        parse_phase(body, url="http://h/async/1/phase")
    assert repr(body.decode().strip()) in info.value.message
    assert info.value.snippet == body.decode()
    assert info.value.url == "http://h/async/1/phase"


def test_phases_constant() -> None:
    assert len(PHASES) == len(set(PHASES)) == 10
    assert {"PENDING", "EXECUTING", "COMPLETED", "ERROR", "HELD", "ARCHIVED"} <= set(PHASES)


# -- form fields ---------------------------------------------------------------------------


def test_sync_fields_minimal() -> None:
    assert sync_fields("SELECT 1") == [
        ("REQUEST", "doQuery"),
        ("LANG", "ADQL"),
        ("QUERY", "SELECT 1"),
    ]


def test_sync_fields_match_pyvo_where_pyvo_is_right() -> None:
    theirs = dict(TAPQuery("http://h/tap", "SELECT TOP 5 * FROM t", maxrec=5))
    ours = dict(sync_fields("SELECT TOP 5 * FROM t", maxrec=5))
    assert ours == {key: str(value) for key, value in theirs.items()}


def test_maxrec_zero_is_sent() -> None:
    fields = sync_fields("SELECT * FROM t", maxrec=0)
    assert ("MAXREC", "0") in fields
    assert "MAXREC" not in dict(TAPQuery("http://h/tap", "SELECT * FROM t", maxrec=0))


def test_format_only_when_given() -> None:
    names = [name for name, _ in sync_fields("SELECT 1", maxrec=10)]
    assert "FORMAT" not in names and "RESPONSEFORMAT" not in names
    fields = sync_fields("SELECT 1", format="votable/td", lang="ADQL-2.1")
    assert ("FORMAT", "votable/td") in fields
    assert ("RESPONSEFORMAT", "votable/td") in fields
    assert ("LANG", "ADQL-2.1") in fields


@pytest.mark.parametrize(
    "kwargs",
    [
        {"query": ""},
        {"query": " \n\t"},
        {"query": None},
        {"query": "SELECT 1", "maxrec": -1},
        {"query": "SELECT 1", "maxrec": True},
        {"query": "SELECT 1", "maxrec": False},
        {"query": "SELECT 1", "maxrec": 1.5},
        {"query": "SELECT 1", "maxrec": "10"},
        {"query": "SELECT 1", "format": ""},
        {"query": "SELECT 1", "lang": " "},
    ],
)
@pytest.mark.parametrize("builder", [sync_fields, async_fields])
def test_bad_input_is_a_parameter_error(
    builder: Callable[..., object], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ParameterError):
        builder(**kwargs)


def test_integer_like_maxrec_is_accepted() -> None:
    assert ("MAXREC", "5") in sync_fields("SELECT 1", maxrec=np.int64(5))  # type: ignore[arg-type]


def test_async_fields() -> None:
    assert async_fields("SELECT 1") == sync_fields("SELECT 1")
    fields = async_fields("SELECT 1", maxrec=0, run=True)
    assert fields[-1] == ("PHASE", "RUN")
    assert fields[:-1] == sync_fields("SELECT 1", maxrec=0)


# -- the layer's rule -----------------------------------------------------------------------


def test_module_is_sans_io() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(tap))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported
    assert not imported & {"aiohttp", "asyncio", "aiofiles", "requests", "socket"}
