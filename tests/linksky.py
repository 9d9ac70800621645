"""A small SIA v2 + DataLink + SODA service for client and harvest tests.

- ``/sia2``: ObsCore rows for the fields within the POS circle. By default each
  row's access URL is its DataLink document (``access_format`` says so); with
  ``descriptor=True`` rows point at the FITS file and the answer carries a
  DataLink service descriptor instead (``ID`` from ``obs_publisher_did``).
- ``/dl?ID=``: the DataLink document: ``#this`` (FITS), ``#preview`` (PNG),
  ``#progenitor`` and, unless ``soda=False``, a ``#cutout`` link to a SODA sync
  descriptor; unknown IDs get an error row.
- ``/soda?ID=&CIRCLE=`` (or ``POLYGON``, ``POS``): a real FITS cutout (astropy
  Cutout2D), its WCS shifted with it.
- ``/files/<name>.fits``, ``/files/<name>.png``: the data; every fetch counted.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from urllib.parse import quote
from xml.sax.saxutils import escape

import numpy as np
from aiohttp import web
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from tests.servers import LocalServer

DATALINK = "application/x-votable+xml;content=datalink"
FIELDS = {
    "m51_r": (202.4696, 47.1952),
    "m51_g": (202.4696, 47.1952),
    "m101_r": (210.8025, 54.3488),
}
PIXELS = 240  # 240 x 240 float32 at 2 arcsec/pixel: 8 arcmin across, ~230 kB


def field_fits(name: str) -> bytes:
    ra, dec = FIELDS[name]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [PIXELS / 2 + 0.5, PIXELS / 2 + 0.5]
    wcs.wcs.cdelt = [-2 / 3600, 2 / 3600]
    seed = sum(name.encode())
    data = np.random.default_rng(seed).normal(100, 5, (PIXELS, PIXELS)).astype("float32")
    header = wcs.to_header()
    header["OBJECT"] = name
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buffer)
    return buffer.getvalue()


def _votable(body: str, *, resources: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        f'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/>{body}</RESOURCE>'
        f"{resources}</VOTABLE>"
    ).encode()


def _row(*cells: object) -> str:
    return (
        "<TR>"
        + "".join("<TD/>" if c is None else f"<TD>{escape(str(c))}</TD>" for c in cells)
        + "</TR>"
    )


class LinkSky:
    """The service; see the module documentation."""

    def __init__(
        self,
        server: LocalServer,
        *,
        descriptor: bool = False,
        soda: bool = True,
        two_this: bool = False,
        links_again: bool = False,
        delay: float = 0.0,
        unlabelled: bool = False,
    ) -> None:
        self.server = server
        self.descriptor = descriptor
        self.soda = soda
        self.two_this = two_this  # a FITS and a JPEG #this per dataset
        self.links_again = links_again  # #this points at another DataLink document
        self.delay = delay  # seconds before each file or links answer (to kill a harvest in)
        self.completed: Counter[str] = Counter()
        self.unlabelled = unlabelled  # rows point at DataLink but say image/fits
        self.fetches: Counter[str] = Counter()
        self.cutouts: list[dict[str, str]] = []
        self._files = {name: field_fits(name) for name in FIELDS}
        server.route("GET", "/sia2", self.sia2)
        server.route("GET", "/dl", self.links)
        server.route("GET", "/soda", self.cut)
        server.route("GET", "/files/*", self.file)

    def did(self, name: str) -> str:
        return f"ivo://linksky.test/images?{name}"

    def full_size(self, name: str) -> int:
        return len(self._files[name])

    def url(self, path: str) -> str:
        return self.server.url(path)

    async def sia2(self, request: web.Request) -> web.Response:
        shape, ra, dec, radius = request.query["POS"].split()
        assert shape == "CIRCLE"
        centre = SkyCoord(float(ra), float(dec), unit="deg")
        fields = '<FIELD name="obs_publisher_did" ID="pubdid" datatype="char" arraysize="*"/>'
        for name in ("access_url", "access_format", "obs_title"):
            fields += f'<FIELD name="{name}" datatype="char" arraysize="*"/>'
        fields += '<FIELD name="s_ra" datatype="double" unit="deg"/>'
        fields += '<FIELD name="s_dec" datatype="double" unit="deg"/>'
        fields += '<FIELD name="access_estsize" datatype="long" unit="kbyte"/>'
        rows = []
        for name, (fra, fdec) in FIELDS.items():
            if centre.separation(SkyCoord(fra, fdec, unit="deg")).deg > float(radius) + 0.07:
                continue
            did = self.did(name)
            if self.descriptor:
                access, kind = self.url(f"/files/{name}.fits"), "image/fits"
            else:
                access, kind = self.url("/dl?ID=" + quote(did, safe="")), DATALINK
                if self.unlabelled:
                    kind = "image/fits"
            size = len(self._files[name]) // 1000
            rows.append(_row(did, access, kind, f"LinkSky {name}", fra, fdec, size))
        table = f"<TABLE>{fields}<DATA><TABLEDATA>{''.join(rows)}</TABLEDATA></DATA></TABLE>"
        resources = ""
        if self.descriptor:
            resources = (
                '<RESOURCE type="meta" utype="adhoc:service">'
                '<PARAM name="standardID" datatype="char" arraysize="*"'
                ' value="ivo://ivoa.net/std/DataLink#links-1.0"/>'
                f'<PARAM name="accessURL" datatype="char" arraysize="*" value="{self.url("/dl")}"/>'
                '<GROUP name="inputParams">'
                '<PARAM name="ID" datatype="char" arraysize="*" ref="pubdid" value=""/>'
                "</GROUP></RESOURCE>"
            )
        return web.Response(
            body=_votable(table, resources=resources), content_type="application/x-votable+xml"
        )

    async def links(self, request: web.Request) -> web.Response:
        did = request.query.get("ID", "")
        self.fetches["/dl"] += 1
        await asyncio.sleep(self.delay)
        name = did.rsplit("?", 1)[-1]
        names = ("ID", "access_url", "service_def", "error_message", "description",
                 "semantics", "content_type")  # fmt: skip
        fields = "".join(f'<FIELD name="{n}" datatype="char" arraysize="*"/>' for n in names)
        fields += '<FIELD name="content_length" datatype="long"><VALUES null="-1"/></FIELD>'
        resources = ""
        if name not in FIELDS or did != self.did(name):
            rows = [_row(did, None, None, f"NotFoundFault: {did} is not known here",
                         None, "#this", None, -1)]  # fmt: skip
        else:
            this = self.url(f"/files/{name}.fits")
            kind = "image/fits"
            if self.links_again:
                this, kind = self.url("/dl?ID=" + quote(did, safe="")), DATALINK
            rows = [
                _row(did, this, None, None, "The full dataset", "#this", kind,
                     len(self._files[name])),
                _row(did, self.url(f"/files/{name}.png"), None, None, "Preview",
                     "#preview", "image/png", -1),
                _row(did, self.url(f"/raw/{name}.fits"), None, None, "Raw frame",
                     "#progenitor", "image/fits", -1),
            ]  # fmt: skip
            if self.two_this:
                rows.append(_row(did, self.url(f"/files/{name}.jpg"), None, None,
                                 "As JPEG", "#this", "image/jpeg", -1))  # fmt: skip
            if self.soda:
                rows.append(_row(did, None, "soda", None, "Cutouts", "#cutout",
                                 "image/fits", -1))  # fmt: skip
                resources = (
                    '<RESOURCE type="meta" utype="adhoc:service" ID="soda">'
                    '<PARAM name="standardID" datatype="char" arraysize="*"'
                    ' value="ivo://ivoa.net/std/SODA#sync-1.0"/>'
                    f'<PARAM name="accessURL" datatype="char" arraysize="*"'
                    f' value="{self.url("/soda")}"/>'
                    '<GROUP name="inputParams">'
                    f'<PARAM name="ID" datatype="char" arraysize="*" value="{escape(did)}"/>'
                    '<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle"'
                    ' unit="deg" value=""/>'
                    '<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon"'
                    ' unit="deg" value=""/>'
                    "</GROUP></RESOURCE>"
                )
        table = f"<TABLE>{fields}<DATA><TABLEDATA>{''.join(rows)}</TABLEDATA></DATA></TABLE>"
        return web.Response(
            body=_votable(table, resources=resources),
            headers={"Content-Type": DATALINK},
        )

    async def cut(self, request: web.Request) -> web.Response:
        self.cutouts.append(dict(request.query))
        name = request.query.get("ID", "").rsplit("?", 1)[-1]
        if name not in FIELDS:
            return web.Response(
                status=422, text=f"UsageFault: unknown ID {request.query.get('ID')}"
            )
        with fits.open(io.BytesIO(self._files[name])) as hdus:
            data, wcs = hdus[0].data, WCS(hdus[0].header)
        if "CIRCLE" in request.query:
            ra, dec, radius = (float(x) for x in request.query["CIRCLE"].split())
            size = 2 * radius * u.deg
        elif "POLYGON" in request.query:
            values = [float(x) for x in request.query["POLYGON"].split()]
            ras, decs = values[0::2], values[1::2]
            ra, dec = sum(ras) / len(ras), sum(decs) / len(decs)
            size = (max(decs) - min(decs)) * u.deg
        else:
            return web.Response(status=422, text="UsageFault: no region")
        try:
            cutout = Cutout2D(data, SkyCoord(ra, dec, unit="deg"), size, wcs=wcs, mode="trim")
        except Exception as exc:  # no overlap
            return web.Response(status=422, text=f"UsageFault: {exc}")
        buffer = io.BytesIO()
        fits.PrimaryHDU(cutout.data, cutout.wcs.to_header()).writeto(buffer)
        self.fetches["/soda"] += 1
        return web.Response(body=buffer.getvalue(), content_type="image/fits")

    async def file(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[-1]
        self.fetches[name] += 1
        await asyncio.sleep(self.delay)
        stem, _, ext = name.rpartition(".")
        if stem not in FIELDS:
            return web.Response(status=404, text="no such file")
        if ext == "fits":
            response = web.StreamResponse(headers={"Content-Type": "image/fits"})
            response.content_length = len(self._files[stem])
            await response.prepare(request)
            data = self._files[stem]
            for start in range(0, len(data), 32 * 1024):
                await response.write(data[start : start + 32 * 1024])
                await asyncio.sleep(self.delay / 8)
            await response.write_eof()
            self.completed[name] += 1
            return response
        if ext == "png":
            return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"0" * 100, content_type="image/png")
        if ext == "jpg":
            return web.Response(body=b"\xff\xd8\xff" + b"0" * 100, content_type="image/jpeg")
        return web.Response(status=404, text="no such file")
