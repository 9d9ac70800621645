"""Write records.json, the content of the test registry (rr/q.rd loads it).

The records describe, in RegTAP 1.1 rows (and RegTAP 1.2 coverage rows):

- the services this DaCHS really runs, with their real access URLs: the
  SIA v1 services of the two image collections, the site-wide SIA v2
  service, and TAP (which also serves ivoa.obscore and this registry);
- a mirror of the SDSS-like SIA service on a second host name (127.0.0.1
  instead of localhost) whose access URL presets FORMAT=image/fits, and which
  matches "sloan" only through a subject, as in the NAVO notebook;
- a data collection whose SIA and TAP capabilities are auxiliary;
- an organisation without capabilities;
- look-alikes elsewhere (SSA, cone search, X-ray and UV images, plates) whose
  access URLs point at a port where nothing listens: each must be filtered
  out by some constraint of the tests' searches.

Usage (any Python 3 with healpy, which DaCHS's python3 has through pymoc):

    python3 regtap_records.py <output.json> [<server URL, default http://localhost:8080>]
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

#: Positions of the image targets (the same as make_fits.TARGETS).
M51 = (202.469575, 47.195258)
M101 = (210.802429, 54.348750)
M87 = (187.705930, 12.391123)
M31 = (10.684708, 41.268750)
NGC1068 = (40.669629, -0.013281)

#: Planck constant times the speed of light, J m: energy = HC / wavelength.
HC = 6.62607015e-34 * 299792458.0

#: Where nothing listens: access URLs of services that must never be called.
NOWHERE = "http://127.0.0.1:9"

MOC_ORDER = 6


def energy_band(shortest: float, longest: float) -> dict[str, float]:
    """An stc_spectral row's interval for wavelengths in metres."""
    return {"spectral_start": HC / longest, "spectral_end": HC / shortest}


def moc(circles: list[tuple[float, float, float]]) -> str:
    """An ASCII MOC of order MOC_ORDER covering circles (ra, dec, radius), degrees."""
    import healpy
    import numpy

    cells: set[int] = set()
    for ra, dec, radius in circles:
        vector = healpy.ang2vec(ra, dec, lonlat=True)
        found = healpy.query_disc(
            2**MOC_ORDER, vector, math.radians(radius), inclusive=True, nest=True
        )
        cells.update(int(cell) for cell in numpy.asarray(found))
    return _ascii_moc(cells)


ALL_SKY = "0/0-11"

#: The images of the site (make_fits.py): (width in degrees, targets) per
#: collection; each image is centred OFFSET degrees north of its target.
IMAGE_FOOTPRINTS = {
    "sdss": (0.25, (M51, M101, M87)),
    "uvot": (0.25, (M51, M101, M31, NGC1068)),
    "dlimg": (800 / 3600, (M51, M87, NGC1068)),
}
OFFSET = 0.03


def footprint_moc(collections: Sequence[str]) -> str:
    """An ASCII MOC of order MOC_ORDER of the real footprints of the images of
    ``collections`` (each image's four corners as a polygon on the sky), as
    HEALPix's inclusive query makes it at the coarsest setting (``fact=1``,
    the one pgsphere uses for ``MOC(order, geometry)``): a search circle
    inside an image is then inside the coverage by the registry's own test."""
    import healpy
    import numpy

    cells: set[int] = set()
    for name in collections:
        width, centres = IMAGE_FOOTPRINTS[name]
        half = width / 2
        for ra, dec in centres:
            dec += OFFSET
            stretch = half / math.cos(math.radians(dec))
            corners = [
                (ra - stretch, dec - half),
                (ra + stretch, dec - half),
                (ra + stretch, dec + half),
                (ra - stretch, dec + half),
            ]
            vertices = numpy.array([healpy.ang2vec(a, d, lonlat=True) for a, d in corners])
            found = healpy.query_polygon(2**MOC_ORDER, vertices, inclusive=True, nest=True, fact=1)
            cells.update(int(cell) for cell in numpy.asarray(found))
    return _ascii_moc(cells)


def _ascii_moc(cells: set[int]) -> str:
    ranges: list[list[int]] = []
    for cell in sorted(cells):
        if ranges and ranges[-1][1] == cell - 1:
            ranges[-1][1] = cell
        else:
            ranges.append([cell, cell])
    text = " ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)
    return f"{MOC_ORDER}/{text}"


class Registry:
    """Rows per RegTAP table, filled one resource at a time."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, object]]] = defaultdict(list)

    def add(self, table: str, **row: object) -> None:
        self.tables[table].append(row)

    def resource(
        self,
        ivoid: str,
        *,
        res_type: str,
        title: str,
        short_name: str,
        description: str,
        creators: Sequence[str] = (),
        subjects: Sequence[str] = (),
        waveband: Sequence[str] = (),
        content_type: Sequence[str] = (),
        reference_url: str | None = None,
        created: str = "2024-05-01T12:00:00",
        updated: str = "2024-05-02T08:30:00",
    ) -> str:
        ivoid = ivoid.lower()
        self.add(
            "resource",
            ivoid=ivoid,
            res_type=res_type,
            created=created,
            short_name=short_name,
            res_title=title,
            updated=updated,
            content_level="research",
            res_description=" ".join(description.split()),
            reference_url=reference_url,
            creator_seq="; ".join(creators) or None,
            content_type="#".join(content_type) or None,
            waveband="#".join(band.lower() for band in waveband) or None,
            rights="public",
            harvested_from="ivo://voharvest.test/registry",
        )
        for index, name in enumerate(creators):
            self.add("res_role", ivoid=ivoid, role_name=name, base_role="creator", role_index=index)
        self.add(
            "res_role",
            ivoid=ivoid,
            role_name="VOH Test Data Centre",
            role_ivoid="ivo://voharvest.test/org",
            base_role="publisher",
            role_index=0,
        )
        self.add(
            "res_role",
            ivoid=ivoid,
            role_name="VOH help desk",
            email="help@voharvest.invalid",
            base_role="contact",
            role_index=0,
        )
        for subject in subjects:
            self.add("res_subject", ivoid=ivoid, res_subject=subject)
        self.add("res_date", ivoid=ivoid, date_value=created, value_role="created")
        return ivoid

    def capability(
        self,
        ivoid: str,
        cap_index: int,
        *,
        standard_id: str | None,
        cap_type: str | None,
        description: str | None = None,
        interfaces: Sequence[dict[str, object]] = (),
    ) -> None:
        self.add(
            "capability",
            ivoid=ivoid,
            cap_index=cap_index,
            cap_type=cap_type,
            cap_description=description,
            standard_id=standard_id.lower() if standard_id else None,
        )
        for interface in interfaces:
            intf_index = len([i for i in self.tables["interface"] if i["ivoid"] == ivoid])
            row = {
                "ivoid": ivoid,
                "cap_index": cap_index,
                "intf_index": intf_index,
                "authenticated_only": 0,
            }
            row.update(interface)
            self.add("interface", **row)


def param_http(access_url: str, version: str, result_type: str = "application/x-votable+xml"):
    return {
        "intf_type": "vs:paramhttp",
        "intf_role": "std",
        "std_version": version,
        "query_type": "get",
        "result_type": result_type,
        "url_use": "base",
        "access_url": access_url,
    }


def vosi(access_url: str) -> dict[str, object]:
    return {"intf_type": "vs:paramhttp", "url_use": "full", "access_url": access_url}


def web_page(access_url: str) -> dict[str, object]:
    return {"intf_type": "vr:webbrowser", "url_use": "full", "access_url": access_url}


def build(server: str) -> dict[str, list[dict[str, object]]]:
    """Every table's rows, for a DaCHS whose serverURL is ``server``."""
    server = server.rstrip("/")
    parts = urlsplit(server)
    # The same server under another host name: a "second host" for the mirror.
    other_host = urlunsplit(
        (parts.scheme, f"127.0.0.1:{parts.port or 80}", parts.path, "", "")
    ).rstrip("/")
    reg = Registry()
    sia = "ivo://ivoa.net/std/sia"
    sia2 = "ivo://ivoa.net/std/sia#query-2.0"

    # --- the services this DaCHS runs ------------------------------------------
    sdss = reg.resource(
        "ivo://voharvest.test/sdss/q/i",
        res_type="vs:catalogservice",
        title="VOH Sloan-like Optical Images",
        short_name="VOH SDSS",
        description="""Synthetic g and r band images in the style of the Sloan
            Digital Sky Survey (SDSS), served through Simple Image Access: one
            FITS image and one JPEG rendering per band around each of a few
            bright galaxies.""",
        creators=["Harvester, V.", "Testbed, D."],
        subjects=["sky-surveys", "galaxies"],
        waveband=["optical"],
        content_type=["survey"],
        reference_url=f"{server}/voharvest/sdss/q/i/info",
    )
    reg.capability(
        sdss,
        0,
        standard_id=sia,
        cap_type="sia:simpleimageaccess",
        description="Images around a position (SIA 1.0).",
        interfaces=[param_http(f"{server}/voharvest/sdss/q/i/siap.xml?", "1.0")],
    )
    reg.capability(
        sdss,
        1,
        standard_id=None,
        cap_type=None,
        interfaces=[web_page(f"{server}/voharvest/sdss/q/i/form")],
    )
    reg.add(
        "res_detail",
        ivoid=sdss,
        cap_index=0,
        detail_xpath="/capability/imageServiceType",
        detail_value="pointed",
    )
    reg.add("alt_identifier", ivoid=sdss, alt_identifier="doi:10.5072/voh-sdss")
    reg.add("stc_spatial", ivoid=sdss, coverage=moc([(*p, 0.5) for p in (M51, M101, M87)]))
    reg.add("stc_spectral", ivoid=sdss, **energy_band(4.0e-7, 6.9e-7))
    reg.add("stc_temporal", ivoid=sdss, time_start=53074.0, time_end=53079.0)

    uvot = reg.resource(
        "ivo://voharvest.test/uvot/q/i",
        res_type="vs:catalogservice",
        title="VOH Swift UVOT-like Ultraviolet Images",
        short_name="VOH UVOT",
        description="""Synthetic uvw1 images in the style of the Swift UV/Optical
            Telescope (UVOT), served through Simple Image Access: one FITS image
            and one JPEG rendering around each of a few nearby galaxies.""",
        creators=["Testbed, D.", "Müller, J."],
        subjects=["ultraviolet-astronomy", "galaxies"],
        waveband=["uv"],
        content_type=["archive"],
        reference_url=f"{server}/voharvest/uvot/q/i/info",
    )
    reg.capability(
        uvot,
        0,
        standard_id=sia,
        cap_type="sia:simpleimageaccess",
        description="Images around a position (SIA 1.0).",
        interfaces=[param_http(f"{server}/voharvest/uvot/q/i/siap.xml?", "1.0")],
    )
    reg.capability(
        uvot,
        1,
        standard_id=None,
        cap_type=None,
        interfaces=[web_page(f"{server}/voharvest/uvot/q/i/form")],
    )
    reg.add("stc_spatial", ivoid=uvot, coverage=moc([(*p, 0.5) for p in (M51, M101, M31, NGC1068)]))
    reg.add("stc_spectral", ivoid=uvot, **energy_band(2.2e-7, 3.0e-7))
    reg.add("stc_temporal", ivoid=uvot, time_start=53074.0, time_end=53079.0)

    siap2 = reg.resource(
        "ivo://voharvest.test/__system__/siap2/sitewide",
        res_type="vs:catalogservice",
        title="VOH site-wide SIA version 2 service",
        short_name="VOH SIAv2",
        description="""All images of this site, through Simple Image Access
            version 2: the Sloan-like optical images and the Swift UVOT-like
            ultraviolet images, FITS and JPEG.""",
        creators=["Harvester, V."],
        subjects=["virtual-observatories", "galaxies"],
        waveband=["optical", "uv"],
        content_type=["archive"],
    )
    reg.capability(
        siap2,
        0,
        standard_id=sia2,
        cap_type="vs:capability",
        description="Images by position, band, time, ... (SIA 2.0).",
        interfaces=[param_http(f"{server}/__system__/siap2/sitewide/siap2.xml", "2.0")],
    )
    everything = (M51, M101, M87, M31, NGC1068)
    reg.add("stc_spatial", ivoid=siap2, coverage=moc([(*p, 0.5) for p in everything]))
    reg.add("stc_spectral", ivoid=siap2, **energy_band(4.0e-7, 6.9e-7))
    reg.add("stc_spectral", ivoid=siap2, **energy_band(2.2e-7, 3.0e-7))
    reg.add("stc_temporal", ivoid=siap2, time_start=53074.0, time_end=53079.0)

    tap = reg.resource(
        "ivo://voharvest.test/tap",
        res_type="vs:catalogservice",
        title="VOH TAP service",
        short_name="VOH TAP",
        description="""The Table Access Protocol service of the VOH test site:
            ADQL queries on the ObsCore table of all its images and on this
            relational registry.""",
        creators=["Harvester, V."],
        subjects=["virtual-observatories"],
        waveband=["optical", "uv"],
        content_type=["archive"],
    )
    reg.capability(
        tap,
        0,
        standard_id="ivo://ivoa.net/std/tap",
        cap_type="tr:tableaccess",
        description="ADQL queries, sync and async (TAP 1.1).",
        interfaces=[param_http(f"{server}/tap", "1.1")],
    )
    for index, (kind, path) in enumerate(
        (("availability", "availability"), ("capabilities", "capabilities"), ("tables", "tables")),
        start=1,
    ):
        reg.capability(
            tap,
            index,
            standard_id=f"ivo://ivoa.net/std/vosi#{kind}",
            cap_type=None,
            interfaces=[vosi(f"{server}/tap/{path}")],
        )
    for model in ("ivo://ivoa.net/std/obscore#core-1.1", "ivo://ivoa.net/std/RegTAP#1.1"):
        reg.add(
            "res_detail",
            ivoid=tap,
            cap_index=0,
            detail_xpath="/capability/dataModel/@ivo-id",
            detail_value=model,
        )
    reg.add(
        "res_detail",
        ivoid=tap,
        cap_index=0,
        detail_xpath="/capability/language/version/@ivo-id",
        detail_value="ivo://ivoa.net/std/ADQL#v2.1",
    )
    reg.add("res_schema", ivoid=tap, schema_index=0, schema_name="ivoa", schema_title="IVOA")
    reg.add("res_schema", ivoid=tap, schema_index=1, schema_name="rr", schema_title="RegTAP")
    reg.add(
        "res_table",
        ivoid=tap,
        schema_index=0,
        table_index=0,
        table_name="ivoa.obscore",
        table_title="ObsCore",
        table_description="The images of this site in the ObsCore data model.",
        table_utype="ivo://ivoa.net/std/obscore#table-1.1",
        table_type="view",
        nrows=20,
    )
    reg.add(
        "res_table",
        ivoid=tap,
        schema_index=1,
        table_index=1,
        table_name="rr.resource",
        table_title="Resources",
        table_utype="ivo://ivoa.net/std/regtap#1.1",
        table_type="base_table",
    )
    for name, ucd, unit, datatype in (
        ("s_ra", "pos.eq.ra", "deg", "double"),
        ("s_dec", "pos.eq.dec", "deg", "double"),
        ("access_url", "meta.ref.url", None, "char"),
        ("em_min", "em.wl;stat.min", "m", "double"),
        ("t_min", "time.start;obs.exposure", "d", "double"),
    ):
        reg.add(
            "table_column",
            ivoid=tap,
            table_index=0,
            name=name,
            ucd=ucd,
            unit=unit,
            datatype=datatype,
            std=1,
            type_system="vs:votabletype",
        )
    reg.add("table_column", ivoid=tap, table_index=1, name="ivoid", ucd="meta.ref.ivoid")
    # Global discovery (pyvo.discover, VOClient.discover): the TAP service's
    # coverage is the real footprint of ivoa.obscore, at order 6.
    reg.add("stc_spatial", ivoid=tap, coverage=footprint_moc(("sdss", "uvot", "dlimg")))
    # The SDSS-like collection is in ivoa.obscore: its SIA 1.0 service is served
    # by the TAP service (RegTAP lower-cases the DataCite term IsServedBy).
    reg.add(
        "relationship",
        ivoid=sdss,
        relationship_type="isservedby",
        related_id=tap,
        related_name="VOH TAP service",
    )

    collection = reg.resource(
        "ivo://voharvest.test/uvot/data",
        res_type="vs:catalogresource",
        title="VOH Swift UVOT-like image collection",
        short_name="VOH UVOT data",
        description="""The table of the Swift UVOT-like ultraviolet images,
            queryable through TAP and searchable through the collection's
            Simple Image Access service.""",
        creators=["Testbed, D."],
        subjects=["ultraviolet-astronomy"],
        waveband=["uv"],
        content_type=["archive"],
    )
    reg.capability(
        collection,
        0,
        standard_id="ivo://ivoa.net/std/tap#aux",
        cap_type="tr:tableaccess",
        interfaces=[param_http(f"{server}/tap", "1.1")],
    )
    reg.capability(
        collection,
        1,
        standard_id="ivo://ivoa.net/std/sia#aux",
        cap_type="sia:simpleimageaccess",
        interfaces=[param_http(f"{server}/voharvest/uvot/q/i/siap.xml?", "1.0")],
    )
    reg.add(
        "relationship",
        ivoid=collection,
        relationship_type="served-by",
        related_id="ivo://voharvest.test/tap",
        related_name="VOH TAP service",
    )
    reg.add(
        "res_table",
        ivoid=collection,
        table_index=0,
        table_name="vh_uvot.main",
        table_title="UVOT-like images",
        table_type="base_table",
        nrows=8,
    )
    for name, ucd in (
        ("accref", "meta.ref.url;meta.dataset"),
        ("centerAlpha", "pos.eq.ra;meta.main"),
        ("centerDelta", "pos.eq.dec;meta.main"),
        ("object", "meta.id;src"),
        ("exptime", "time.duration;obs.exposure"),
    ):
        reg.add("table_column", ivoid=collection, table_index=0, name=name, ucd=ucd)

    mirror = reg.resource(
        "ivo://voharvest.test/sdss/mirror",
        res_type="vs:catalogservice",
        title="VOH Optical Images (mirror)",
        short_name="VOH SDSS mir",
        description="""A mirror of the optical g and r band images of the VOH
            test site, published by a second host. Its access URL presets
            FORMAT=image/fits.""",
        creators=["Harvester, V."],
        subjects=["Sloan Digital Sky Survey", "galaxies"],
        waveband=["optical"],
        content_type=["survey"],
    )
    reg.capability(
        mirror,
        0,
        standard_id=sia,
        cap_type="sia:simpleimageaccess",
        interfaces=[
            param_http(f"{other_host}/voharvest/sdss/q/i/siap.xml?FORMAT=image/fits&", "1.0")
        ],
    )
    reg.add(
        "relationship",
        ivoid=mirror,
        relationship_type="mirror-of",
        related_id=sdss,
        related_name="VOH Sloan-like Optical Images",
    )
    reg.add("stc_spatial", ivoid=mirror, coverage=moc([(*p, 0.5) for p in (M51, M101, M87)]))

    reg.resource(
        "ivo://voharvest.test/org",
        res_type="vr:organisation",
        title="VOH Test Data Centre",
        short_name="VOH",
        description="""The organisation publishing the resources of the voharvest
            integration tests.""",
        subjects=["virtual-observatories"],
    )

    # --- look-alikes elsewhere: never to be called -----------------------------
    spectra = reg.resource(
        "ivo://voharvest.test/decoy/sdss-spectra",
        res_type="vs:catalogservice",
        title="VOH Sloan-like Spectra",
        short_name="VOH SDSS spec",
        description="""Optical spectra of galaxies in the style of the Sloan
            Digital Sky Survey, served through Simple Spectral Access.""",
        creators=["Harvester, V."],
        subjects=["spectroscopy", "galaxies"],
        waveband=["optical"],
        content_type=["survey"],
    )
    reg.capability(
        spectra,
        0,
        standard_id="ivo://ivoa.net/std/ssa",
        cap_type="ssa:simplespectralaccess",
        interfaces=[param_http(f"{NOWHERE}/sdss/ssap.xml?", "1.1")],
    )
    reg.add("stc_spatial", ivoid=spectra, coverage=moc([(*p, 1.0) for p in (M51, M87)]))
    reg.add("stc_spectral", ivoid=spectra, **energy_band(3.8e-7, 9.2e-7))

    cone = reg.resource(
        "ivo://voharvest.test/decoy/sdss-cone",
        res_type="vs:catalogservice",
        title="VOH Sloan-like Photometric Catalogue",
        short_name="VOH SDSS cat",
        description="""ugriz magnitudes of objects in the style of the Sloan
            Digital Sky Survey photometric catalogue, through a cone search.""",
        creators=["Testbed, D."],
        subjects=["photometry"],
        waveband=["optical"],
        content_type=["catalog"],
    )
    reg.capability(
        cone,
        0,
        standard_id="ivo://ivoa.net/std/conesearch",
        cap_type="cs:conesearch",
        interfaces=[param_http(f"{NOWHERE}/sdss/scs.xml?", "1.0")],
    )
    reg.add("res_table", ivoid=cone, table_index=0, table_name="sdss.photo", table_type="output")
    for name, ucd in (
        ("raj2000", "pos.eq.ra;meta.main"),
        ("dej2000", "pos.eq.dec;meta.main"),
        ("rmag", "phot.mag;em.opt.R"),
        ("gmag", "phot.mag;em.opt.B"),
    ):
        reg.add("table_column", ivoid=cone, table_index=0, name=name, ucd=ucd)

    xrt = reg.resource(
        "ivo://voharvest.test/decoy/xrt",
        res_type="vs:catalogservice",
        title="VOH Swift XRT-like X-ray Images",
        short_name="VOH XRT",
        description="""X-ray images in the style of the Swift X-Ray Telescope
            (XRT), through Simple Image Access.""",
        creators=["O'Brien, K.", "Testbed, D."],
        subjects=["x-ray-astronomy"],
        waveband=["x-ray"],
        content_type=["archive"],
    )
    reg.capability(
        xrt,
        0,
        standard_id=sia,
        cap_type="sia:simpleimageaccess",
        interfaces=[param_http(f"{NOWHERE}/xrt/siap.xml?", "1.0")],
    )
    reg.add("stc_spatial", ivoid=xrt, coverage=moc([(*M31, 1.0)]))
    reg.add("stc_spectral", ivoid=xrt, spectral_start=4.8e-17, spectral_end=1.6e-15)
    reg.add("stc_temporal", ivoid=xrt, time_start=54000.0, time_end=55000.0)

    plates = reg.resource(
        "ivo://voharvest.test/decoy/plates",
        res_type="vs:catalogservice",
        title="VOH Digitised Photographic Plates",
        short_name="VOH plates",
        description="""Scans of blue and red photographic plates covering the
            whole sky, through Simple Image Access.""",
        creators=["O'Brien, K."],
        subjects=["photographic-plates", "sky-surveys"],
        waveband=["optical"],
        content_type=["survey"],
    )
    reg.capability(
        plates,
        0,
        standard_id=sia,
        cap_type="sia:simpleimageaccess",
        interfaces=[param_http(f"{NOWHERE}/plates/siap.xml?", "1.0")],
    )
    reg.add("stc_spatial", ivoid=plates, coverage=ALL_SKY)
    reg.add("stc_spectral", ivoid=plates, **energy_band(3.5e-7, 7.0e-7))
    reg.add("stc_temporal", ivoid=plates, time_start=33000.0, time_end=50000.0)

    galex = reg.resource(
        "ivo://voharvest.test/decoy/galex",
        res_type="vs:catalogservice",
        title="VOH GALEX-like Ultraviolet Images",
        short_name="VOH GALEX",
        description="""Far and near ultraviolet images in the style of the Galaxy
            Evolution Explorer, through Simple Image Access version 2.""",
        creators=["Müller, J."],
        subjects=["ultraviolet-astronomy"],
        waveband=["uv"],
        content_type=["survey"],
    )
    reg.capability(
        galex,
        0,
        standard_id=sia2,
        cap_type="vs:capability",
        interfaces=[param_http(f"{NOWHERE}/galex/siap2", "2.0")],
    )
    reg.add("stc_spatial", ivoid=galex, coverage=moc([(*p, 1.0) for p in (M51, M31)]))
    reg.add("stc_spectral", ivoid=galex, **energy_band(1.35e-7, 2.8e-7))
    reg.add("stc_temporal", ivoid=galex, time_start=52700.0, time_end=56000.0)

    return dict(reg.tables)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: regtap_records.py <output.json> [<server URL>]")
    server_url = sys.argv[2] if len(sys.argv) == 3 else "http://localhost:8080"
    tables = build(server_url)
    text = json.dumps(tables, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(text)
    print(f"{len(tables['resource'])} resources, {sum(map(len, tables.values()))} rows")
