"""The manifest VOTable, judged by STILTS votlint and astropy.

A service may legally send ``+Inf``, ``-Inf``, ``NaN``, ``1e400`` or nothing
for a position, and any unicode or markup in a title; the manifest must still
be a valid VOTable: doubles as ``+Inf``/``-Inf``/``NaN``, integer columns
(which have no null value) empty where there is nothing to say, text escaped.
The Dask combined manifest goes through the same writer with CSV text values.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from aiohttp import web
from astropy.io.votable import parse_single_table

from tests import votlint
from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, RetryPolicy, VOClient
from voharvest.harvesting import harvest
from voharvest.harvesting.manifest import MANIFEST_COLUMNS, VOTableRows, write_manifest

CONFIG = ClientConfig(retry=RetryPolicy(attempts=1), host=HostPolicy(rate=math.inf, concurrency=8))

TITLES = [
    "M51 <b>bold</b> & co ]]> \"quoted\" 'single'",
    "caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f52d \u0301combining",
    "bell\x07 and\x00nul and \ufffe",
    "<![CDATA[ nothing ]]> &amp; &#233;",
]
# (ra, dec) as the service writes them in TABLEDATA.
POSITIONS = [("+Inf", "NaN"), ("1e400", "-Inf"), ("", "-1e400"), ("10.5", "")]


def sia_answer(server: LocalServer) -> bytes:
    rows = "".join(
        f"<TR><TD>{server.url(f'/img/{i}.fits')}</TD><TD>image/fits</TD>"
        f"<TD>{escape(title.replace(chr(7), '').replace(chr(0), '').replace(chr(0xFFFE), ''))}</TD>"
        f"<TD>{ra}</TD><TD>{dec}</TD></TR>"
        for i, (title, (ra, dec)) in enumerate(zip(TITLES, POSITIONS, strict=True))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/><TABLE>'
        '<FIELD name="url" datatype="char" arraysize="*" ucd="VOX:Image_AccessReference"/>'
        '<FIELD name="fmt" datatype="char" arraysize="*" ucd="VOX:Image_Format"/>'
        '<FIELD name="title" datatype="unicodeChar" arraysize="*" ucd="VOX:Image_Title"/>'
        '<FIELD name="ra" datatype="double" ucd="POS_EQ_RA_MAIN"/>'
        '<FIELD name="dec" datatype="double" ucd="POS_EQ_DEC_MAIN"/>'
        f"<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    ).encode()


def no_reports(*paths: Path) -> None:
    assert votlint.judge(paths) == {}


def test_rows_with_infinities_nan_nulls_unicode_and_markup_validate(tmp_path: Path) -> None:
    """The writer alone, with the journal's values and with a CSV's text (the Dask path)."""
    votlint.stilts()
    width = len(MANIFEST_COLUMNS)
    at = {name: i for i, name in enumerate(MANIFEST_COLUMNS)}

    def row(**values: object) -> list[object]:
        cells: list[object] = [None] * width
        for name, value in values.items():
            cells[at[name]] = value
        return cells

    journal_rows = [
        row(service="s", target="M51 <x>", url="http://h/a?b=1&c=2", title=TITLES[0],
            ra=math.inf, dec=math.nan, announced_size=10, state="done", bytes=10),
        row(service="s", target=TITLES[1], url="u", title=TITLES[2],
            ra=-math.inf, dec=-0.0, announced_size=math.inf, state="failed", error=TITLES[3]),
        row(service="s", target="t", url="u2", ra=1e-300, dec=89.99999999999999,
            announced_size=2**64, bytes=-1),
    ]  # fmt: skip
    csv_rows = [
        ["" if v is None else str(v) for v in r] for r in journal_rows
    ]  # what a partition's manifest.csv holds: "inf", "nan", "" ...
    csv_rows.append(["x"] * width)  # and text where a number was due
    written = []
    for name, columns, rows in (
        ("journal.xml", MANIFEST_COLUMNS, journal_rows),
        ("combined.xml", ("partition", *MANIFEST_COLUMNS), [[0, *r] for r in csv_rows]),
    ):
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as handle, VOTableRows(handle, columns) as out:
            for cells in rows:
                out.write(cells)
        written.append(path)
        text = path.read_text(encoding="utf-8")
        assert ">inf<" not in text and ">nan<" not in text and ">-inf<" not in text
    no_reports(*written)
    table = parse_single_table(str(written[0])).to_table()
    ra = [float(v) for v in np.ma.filled(table["ra"], np.nan)]
    assert ra[:2] == [math.inf, -math.inf]
    assert math.isnan(float(np.ma.filled(table["dec"], np.nan)[0]))
    shown = (
        TITLES[2].replace("\x07", "\ufffd").replace("\x00", "\ufffd").replace("\ufffe", "\ufffd")
    )
    assert list(table["title"])[:2] == [TITLES[0], shown]
    sizes = np.ma.getmaskarray(table["announced_size"])
    assert list(sizes) == [False, True, True]  # inf and 2**64 are no longs: empty cells


async def test_a_harvest_of_a_service_sending_infinities_writes_valid_manifests(
    server: LocalServer, tmp_path: Path
) -> None:
    votlint.stilts()

    async def sia(request: web.Request) -> web.Response:
        return web.Response(body=sia_answer(server), content_type="text/xml")

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"SIMPLE  =   T" + b" " * 2867, content_type="image/fits")

    server.route("GET", "/sia", sia)
    server.route("GET", "/img/*", image)
    out = tmp_path / "out"
    async with VOClient(CONFIG) as client:
        await harvest(client, [server.url("/sia")], [(10.0, 20.0)], download_to=out).run()
    csv_path, vot_path = write_manifest(out)
    # The combined manifest of a Dask harvest: the same writer over the CSV's text.
    combined = tmp_path / "combined" / "manifest.xml"
    combined.parent.mkdir()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    assert len(rows) == 4
    assert {r[MANIFEST_COLUMNS.index("ra")] for r in rows} == {"inf", "", "10.5"}
    with (
        combined.open("w", encoding="utf-8") as handle,
        VOTableRows(handle, ("partition", *MANIFEST_COLUMNS)) as out_rows,
    ):
        for found in rows:
            out_rows.write((3, *found))
    no_reports(vot_path, combined)
    for path in (vot_path, combined):
        table = parse_single_table(str(path)).to_table()
        by_url = {
            str(url).rsplit("/", 1)[-1]: (ra, dec)
            for url, ra, dec in zip(table["url"], table["ra"], table["dec"], strict=True)
        }
        assert float(by_url["0.fits"][0]) == math.inf
        assert float(by_url["1.fits"][0]) == math.inf  # 1e400 is +Inf
        assert float(by_url["1.fits"][1]) == -math.inf
        assert float(by_url["3.fits"][0]) == 10.5
        assert sorted(str(t) for t in table["title"]) == sorted(
            t.replace("\x07", "").replace("\x00", "").replace("\ufffe", "").strip() for t in TITLES
        )


def test_votlint_is_a_real_judge(tmp_path: Path) -> None:
    """What the manifest wrote before: Python's inf, which votlint reports."""
    votlint.stilts()
    bad = tmp_path / "manifest-bad.xml"
    bad.write_text(
        '<?xml version="1.0"?><VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        '<FIELD name="ra" datatype="double"/><DATA><TABLEDATA><TR><TD>inf</TD></TR>'
        "</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    )
    (reports,) = votlint.judge([bad]).values()
    assert any("Bad double string 'inf'" in line for line in reports)


def test_judged_together_each_report_names_its_own_file_and_line(tmp_path: Path) -> None:
    """The session's manifests are linted in one run: reports go back to their files."""
    votlint.stilts()
    paths = []
    for name, ra in (("a", 1.0), ("b", "inf"), ("c", 2.0), ("d", "-inf")):
        path = tmp_path / f"{name}.xml"  # (not "manifest.xml": the session judges those)
        with path.open("w", encoding="utf-8") as handle, VOTableRows(handle) as rows:
            rows.write(["s", "t", "u", "", "", 0.5, 0.5, 1, "done", "", 1, "", "", "", "", ""])
            rows.write(["s", "t", "u", "", "", 0.5, 0.5, 1, "done", "", 1, "", "", "", "", ""])
        text = path.read_text(encoding="utf-8")
        if isinstance(ra, str):  # a manifest as the old writer wrote it
            head, _, tail = text.rpartition("<TD>0.5</TD><TD>0.5</TD>")
            text = f"{head}<TD>{ra}</TD><TD>0.5</TD>{tail}"
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    reports = votlint.judge(paths)
    assert sorted(reports) == [paths[1], paths[3]]
    for path, ra in ((paths[1], "inf"), (paths[3], "-inf")):
        (line,) = [
            i for i, text in enumerate(path.read_text().splitlines(), 1) if f">{ra}<" in text
        ]
        assert reports[path] == [f"ERROR (l.{line}, c.{reports[path][0].split('c.')[1]}"]
        assert f"Bad double string '{ra}'" in reports[path][0]
