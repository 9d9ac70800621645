"""Every name voharvest writes comes from one scheme: ``<stem>[_<tag>]-<hash><extension>``."""

from __future__ import annotations

import re

import pytest

from voharvest.naming import (
    HASH_DIGITS,
    dataset_filename,
    linked_filename,
    record_filename,
    record_stem,
    service_folder,
    url_filename,
    url_hash,
)
from voharvest.protocol.datalink import Dataset

HASHED = re.compile(
    rf"^(?P<stem>[A-Za-z0-9._+-]+?)-(?P<hash>[0-9a-f]{{{HASH_DIGITS}}})(?P<ext>.*)$"
)


def parts(name: str) -> tuple[str, str, str]:
    found = HASHED.match(name)
    assert found is not None, name
    return found["stem"], found["hash"], found["ext"]


URL = "https://archive.example/data/get?ID=ivo://x/y%2Fz&band=r"
OTHER = "https://h/x/image.fits?ID=3"


@pytest.mark.parametrize(
    ("name", "stem", "ext"),
    [
        (record_filename(URL, "M 51: r band.fits", "image/fits"), "M_51_r_band", ".fits"),
        (record_filename(URL, None, "image/jpeg"), "get", ".jpg"),
        (linked_filename("M_51", URL, "image/fits", "cutout"), "M_51_cutout", ".fits"),
        (linked_filename("M_51", URL, None, "full"), "M_51", ".dat"),
        (service_folder("SDSS DR7", URL), "SDSS_DR7", ""),
        (url_filename(URL), "get", ""),
    ],
)
def test_every_hashed_name_has_the_one_shape(name: str, stem: str, ext: str):
    assert parts(name) == (stem, url_hash(URL), ext)
    assert parts(url_filename(OTHER)) == ("image", url_hash(OTHER), ".fits")


def test_one_hash_length_everywhere():
    hashes = {
        len(parts(record_filename(URL, "t", None))[1]),
        len(parts(service_folder("s", URL))[1]),
        len(parts(url_filename(URL))[1]),
        len(parts(linked_filename("s", URL, None, "cutout"))[1]),
    }
    assert hashes == {HASH_DIGITS}


def test_plain_urls_keep_their_own_name():
    assert url_filename("https://h/files/m51_uvw1.jpg") == "m51_uvw1.jpg"
    assert url_filename("https://h/../../etc/passwd") == "passwd"


def test_a_datalink_record_is_the_stem_of_its_files():
    url = "https://h/dl?ID=abc"
    stem = record_stem(url, "frame 1.fits")
    assert stem == "frame_1"
    assert linked_filename(stem, "https://h/cut?ID=abc&CIRCLE=1+2+3", "image/fits", "cutout") == (
        f"frame_1_cutout-{url_hash('https://h/cut?ID=abc&CIRCLE=1+2+3')}.fits"
    )


def test_datasets_are_named_after_what_they_are():
    full = Dataset(url="https://h/files/frame.fits", format="image/fits", via="https://h/dl")
    assert dataset_filename(full) == "frame.fits"
    cut = Dataset(
        url="https://h/sync?ID=x&CIRCLE=1+2+3",
        format=None,
        via="https://h/dl",
        mode="cutout",
        cut_from="https://h/files/frame.fits.fz",
    )
    assert dataset_filename(cut) == f"frame_cutout-{url_hash(cut.url)}.fits.fz"
