"""Every recorded answer of a real service shipped in the pyvo wheel, parsed by us and by pyvo.

pyvo is the oracle: the same number of records, the same access URLs and
formats, the same error / overflow / format verdict for each file.
"""

from __future__ import annotations

import io
import warnings

import pytest
from astropy.io.votable import parse as astropy_parse
from pyvo.dal import DALFormatError, DALOverflowWarning, DALQueryError
from pyvo.dal.query import DALResults
from pyvo.dal.sia import SIAResults as PyvoSIAResults
from pyvo.dal.sia2 import SIA2Results as PyvoSIA2Results
from pyvo.registry.regtap import RegistryResults as PyvoRegistryResults

from tests.recorded import pyvo_data, pyvo_data_dir
from voharvest import FormatError, NoServiceError, OverflowWarning, QueryError
from voharvest.protocol import votable
from voharvest.protocol.regtap import SERVICE_KINDS

DAL = "pyvo.dal.tests"
REGISTRY = "pyvo.registry.tests"


def _pyvo_votable(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return astropy_parse(io.BytesIO(data), verify="ignore")


def _pyvo_verdict(data: bytes, results_class=DALResults):
    """('error' | 'format' | 'overflow' | 'ok', results or None) as pyvo sees it."""
    try:
        table = _pyvo_votable(data)
    except Exception:
        return "format", None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = results_class(table, url="http://example.com/query")
        except DALQueryError:
            return "error", None
        except DALFormatError:
            return "format", None
    if any(issubclass(w.category, DALOverflowWarning) for w in caught):
        return "overflow", results
    return "ok", results


def _our_verdict(data: bytes, parse=votable.parse_table):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = parse(data)
        except QueryError:
            return "error", None
        except FormatError:
            return "format", None
    if any(issubclass(w.category, OverflowWarning) for w in caught):
        assert results.overflow
        return "overflow", results
    assert not results.overflow
    return "ok", results


STATUS_FILES = sorted(
    entry.name for entry in (pyvo_data_dir(DAL) / "query").iterdir() if entry.name.endswith(".xml")
)
OTHER_TABLES = [
    ("scs", "result.xml"),
    ("ssa", "result.xml"),
    ("sla", "dataset.xml"),
    ("datalink", "datalink.xml"),
    ("datalink", "datalink-obscore.xml"),
    ("datalink", "datalink-ssa.xml"),
    ("datalink", "cutout1.xml"),
    ("datalink", "cutout2.xml"),
    ("datalink", "proc.xml"),
    ("datalink", "proc_inf.xml"),
    ("datalink", "proc_units.xml"),
]


def test_the_status_documents_are_all_found():
    # The query/ folder holds the status conventions: a missing file would
    # silently shrink the comparison below.
    assert {"errorstatus.xml", "overflowstatus.xml", "missingtable.xml", "rootinfo.xml"} <= set(
        STATUS_FILES
    )


@pytest.mark.parametrize("name", STATUS_FILES)
def test_status_documents_agree_with_pyvo(name):
    data = pyvo_data(DAL, "query", name)
    theirs, their_results = _pyvo_verdict(data)
    ours, our_results = _our_verdict(data)
    assert ours == theirs, name
    if their_results is not None:
        assert len(our_results) == len(their_results)
        assert our_results.fieldnames == list(their_results.fieldnames)


@pytest.mark.parametrize(("folder", "name"), OTHER_TABLES)
def test_other_dal_answers_agree_with_pyvo(folder, name):
    data = pyvo_data(DAL, folder, name)
    theirs, their_results = _pyvo_verdict(data)
    ours, our_results = _our_verdict(data)
    assert ours == theirs
    assert len(our_results) == len(their_results)
    assert our_results.to_table().colnames == their_results.to_table().colnames


SIA_FILES = [
    ("sia", "dataset.xml", PyvoSIAResults, 1),
    ("sia2", "dataset.xml", PyvoSIA2Results, 2),
    ("tap", "obscore-image.xml", PyvoSIA2Results, 2),
]


@pytest.mark.parametrize(("folder", "name", "pyvo_class", "version"), SIA_FILES)
def test_sia_answers_agree_with_pyvo(folder, name, pyvo_class, version):
    data = pyvo_data(DAL, folder, name)
    theirs, their_results = _pyvo_verdict(data, pyvo_class)
    ours, our_results = _our_verdict(data, votable.parse_sia)
    assert ours == theirs == "ok"
    assert our_results.version == version
    assert len(our_results) == len(their_results) > 0
    if version == 1:
        their_urls = [r.getdataurl() for r in their_results]
        their_formats = [r.format for r in their_results]
        their_titles = [r.title for r in their_results]
    else:
        their_urls = [r.access_url for r in their_results]
        their_formats = [r.access_format for r in their_results]
        their_titles = [r.obs_title if "obs_title" in r else r.obs_id for r in their_results]
    assert [r.getdataurl() for r in our_results] == their_urls
    assert our_results.getdataurls() == their_urls
    assert [r.format for r in our_results] == their_formats
    assert [r.title for r in our_results] == [str(t) for t in their_titles]


def test_sia1_record_fields_by_ucd_not_by_utype():
    # dataset.xml puts utype obscore:access.reference on a decoy column: the UCD wins.
    results = votable.parse_sia(pyvo_data(DAL, "sia", "dataset.xml"))
    record = results[0]
    assert record.getdataurl() == "http://example.com/querydata/image.fits"
    assert record["not_data_url"] == "This should not be the dataurl"
    assert record.filesize == 153280
    assert record.position.ra.deg == pytest.approx(288.95078924817)
    assert record.dateobs.mjd == pytest.approx(18885.9416782409)
    # The second row leaves VOX:Image_MJDateObs empty.
    assert results[1].dateobs is None


def test_obscore_size_estimate_is_in_kilobytes():
    results = votable.parse_sia(pyvo_data(DAL, "tap", "obscore-image.xml"))
    table = results.to_table()
    assert results[0].filesize == int(table["access_estsize"][0]) * 1000
    assert results[0].dataproduct_type == table["dataproduct_type"][0]
    assert results[0].calib_level == table["calib_level"][0]


REGISTRY_FILES = ["regtap.xml", "multi-interface.xml"]


@pytest.mark.parametrize("name", REGISTRY_FILES)
def test_registry_answers_agree_with_pyvo(name):
    data = pyvo_data(REGISTRY, name)
    theirs, their_results = _pyvo_verdict(data, PyvoRegistryResults)
    ours, our_results = _our_verdict(data, votable.parse_registry)
    assert ours == theirs == "ok"
    assert [r.ivoid for r in our_results] == [r.ivoid for r in their_results]
    assert len(our_results) > 0
    checked_kinds = 0
    for mine, pyvos in zip(our_results, their_results, strict=True):
        assert mine.title == pyvos.res_title
        assert mine.short_name == pyvos.short_name
        assert {i.access_url for i in mine.interfaces} == {
            i.access_url for i in pyvos.interfaces if i.access_url
        }
        assert set(mine.wavebands) == {band.lower() for band in pyvos.waveband}
        for kind in SERVICE_KINDS:
            try:
                expected = pyvos.get_interface(service_type=kind, std_only=True).access_url
            except ValueError:
                # pyvo finds none, or several and refuses to choose.
                try:
                    mine.interface(kind)
                except NoServiceError:
                    continue
                continue
            assert mine.access_url(kind) == expected
            checked_kinds += 1
    assert checked_kinds > 0


def test_registry_parser_reads_our_own_aggregate_layout():
    # The same resources, re-encoded in the layout our query produces, parse the same.
    from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

    from voharvest.protocol.regtap import FIELD_SEPARATOR, INTERFACE_SEPARATOR

    original = votable.parse_registry(pyvo_data(REGISTRY, "multi-interface.xml"))[0]
    doc = VOTableFile()
    resource = Resource()
    doc.resources.append(resource)
    table = TableElement(doc)
    resource.tables.append(table)
    for name in ("ivoid", "res_title", "waveband", "interfaces"):
        table.fields.append(Field(doc, name=name, datatype="unicodeChar", arraysize="*"))
    table.create_arrays(1)
    aggregate = INTERFACE_SEPARATOR.join(
        FIELD_SEPARATOR.join((i.standard_id, i.type, i.role, "1.0", i.access_url, i.description))
        for i in original.interfaces
    )
    table.array[0] = (original.ivoid, original.title, "optical", aggregate)
    buffer = io.BytesIO()
    doc.to_xml(buffer)
    again = votable.parse_registry(buffer.getvalue())[0]
    assert again.ivoid == original.ivoid
    assert [i.access_url for i in again.interfaces] == [i.access_url for i in original.interfaces]
    assert [i.standard_id for i in again.interfaces] == [i.standard_id for i in original.interfaces]
    assert (
        again.access_url("ssa")
        == original.access_url("ssa")
        == "http://dc.zah.uni-heidelberg.de/fhssa?"
    )
