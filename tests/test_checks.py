"""The shared readers of caller input (_checks) and of media types (_media)."""

from __future__ import annotations

import math
import sys
import types

import pytest

from voharvest import ParameterError, _checks
from voharvest._checks import count, http_origin, http_url, is_http_url, is_int, positive
from voharvest._media import is_datalink_format, media_type, same_format, sniff_kind


def test_a_bool_is_never_a_count_nor_a_number():
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert count("n", 0, minimum=0) == 0
    for bad in (True, 0, 1.0, "2", None):
        with pytest.raises(ParameterError, match=r"^n: expected an integer >= 1"):
            count("n", bad)
    assert positive("rate", math.inf, allow_inf=True) == math.inf
    for bad in (False, 0, -1, math.nan, math.inf, "1"):
        with pytest.raises(ParameterError, match=r"^rate: expected a"):
            positive("rate", bad)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://Example.ORG/x", "http://example.org:80"),
        ("HTTPS://example.org", "https://example.org:443"),
        ("http://example.org:8080/a?b=c", "http://example.org:8080"),
    ],
)
def test_an_http_url_and_its_origin(url, origin):
    assert http_url(url) == url and is_http_url(url)
    assert http_origin(url) == origin


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "http:///x", "example.org", "http://h:99999/", "http://[::1", 7]
)
def test_what_is_not_an_http_url_is_a_parameter_error_naming_it(url):
    assert not is_http_url(url)
    with pytest.raises(ParameterError, match=r"^access URL: "):
        http_url(url, "access URL")


def test_one_reading_of_a_media_type():
    assert media_type(" Image/FITS ; charset=x") == "image/fits"
    assert media_type(None) == media_type("") == ""
    assert is_datalink_format('application/x-votable+xml; content="DataLink"')
    assert not is_datalink_format("application/x-votable+xml")
    assert same_format("application/fits", "image/fits") and same_format("image/png", "image/*")
    assert not same_format("text/xml", "application/x-votable+xml")
    assert sniff_kind("image/x-fits") == "fits" and sniff_kind("image/fits+gzip") == "gzip"
    assert sniff_kind("text/xml;content=datalink") == "votable" and sniff_kind("text/plain") is None


def test_a_class_whose_module_another_thread_still_imports_matches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mid-import (in another thread), astropy's module is in sys.modules without its
    class yet: no value is of that class, and asking raises nothing."""
    for name in ("astropy.units", "astropy.coordinates", "astropy.time"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    assert not _checks.is_quantity(1.0)
    assert not _checks.is_skycoord((1.0, 2.0))
    assert not _checks.is_time(53076.0)
