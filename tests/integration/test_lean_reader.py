"""The lean VOTable reader against astropy on what a real server (DaCHS) answers.

Every kind of answer the harvest reads from DaCHS — SIA 1.0 and 2.0 searches,
a RegTAP query, a TAP query, a DataLink document, a DALI error — decoded by the
lean reader and by astropy gives the same fields, values and status.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
import warnings

import pytest

from tests.integration.conftest import Dachs
from tests.protocol.test_lean_reader import _astropy, _lean, assert_same
from voharvest.protocol._lean import read_lean


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return bytes(answer.read())


def _tap(dachs: Dachs, query: str, fmt: str = "votabletd") -> str:
    fields = {"REQUEST": "doQuery", "LANG": "ADQL", "RESPONSEFORMAT": fmt, "QUERY": query}
    return f"{dachs.base}/tap/sync?{urllib.parse.urlencode(fields)}"


def _answers(dachs: Dachs) -> dict[str, str]:
    local = dachs.base
    return {
        "sia1 sdss": f"{local}/voharvest/sdss/q/i/siap.xml?POS=202.47,47.2&SIZE=0.5",
        "sia1 uvot": f"{local}/voharvest/uvot/q/i/siap.xml?POS=202.47,47.2&SIZE=0.5",
        "sia1 error": f"{local}/voharvest/sdss/q/i/siap.xml?POS=nowhere&SIZE=0.5",
        "sia2 sitewide": f"{local}/__system__/siap2/sitewide/siap2.xml"
        "?POS=CIRCLE%20202.47%2047.2%201&RESPONSEFORMAT=votabletd",
        "sia2 dlimg": f"{local}/voharvest/dlimg/q/sia2/siap2.xml"
        "?POS=CIRCLE%20202.47%2047.2%201&RESPONSEFORMAT=votabletd",
        "datalink": dachs.dlmeta(dachs.dlimg_pubdid("M51", "J")).replace(dachs.server_url, local),
        "regtap": _tap(
            dachs,
            "SELECT ivoid, res_title, short_name, waveband, content_level FROM rr.resource",
        ),
        "obscore": _tap(dachs, "SELECT * FROM ivoa.obscore"),
        "obscore binary2": _tap(dachs, "SELECT * FROM ivoa.obscore", "votable/b2"),
        "tap columns": _tap(
            dachs, "SELECT table_name, column_name, datatype, arraysize FROM tap_schema.columns"
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "sia1 sdss",
        "sia1 uvot",
        "sia1 error",
        "sia2 sitewide",
        "sia2 dlimg",
        "datalink",
        "regtap",
        "obscore",
        "obscore binary2",
        "tap columns",
    ],
)
def test_dachs_answers_decode_as_astropy_reads_them(dachs: Dachs, name: str):
    data = _get(_answers(dachs)[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(_lean(data), _astropy(data))
        if name != "sia1 error":
            # What a real server answers (TABLEDATA, BINARY, BINARY2) is read by the
            # lean reader itself.
            assert read_lean(data) is not None
