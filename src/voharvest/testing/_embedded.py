"""The embedded sky: a small simulated VO on 127.0.0.1, shipped for demos and users' tests.

:class:`EmbeddedSky` starts, in the running event loop, one aiohttp site per
"data centre" (each its own port, so each is its own host to a client):

- a registry: a TAP service whose ``/tap/sync`` answers RegTAP queries, and a
  Sesame-compatible name resolver (``/sesame?M51``) that knows the galaxies of
  :mod:`._catalogue`;
- an ultraviolet Swift/UVOT-like SIA 1.0 service answering FITS and JPEG;
- two SDSS DR7-like SIA 1.0 services (short name ``SDSSDR7``) on two hosts, the
  second with ``FORMAT=image/fits`` preset in its access URL (it refuses any
  other FORMAT, as such real services do);
- a site-wide SIA 2.0 service whose rows point at DataLink documents, with a
  SODA cutout service;

all showing one synthetic sky (:mod:`._render`), each with its own pixels::

    async with EmbeddedSky() as sky:
        async with VOClient(sky.client_config()) as client:
            services = await client.regsearch(servicetype="sia", keywords=["sloan"])

``sky.environ()`` gives the ``VOHARVEST_REGISTRY`` and ``VOHARVEST_SESAME``
variables that point a default :class:`~voharvest.ClientConfig` at it.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from ._lifetime import StartStop
from ._lineup import BAND_RANGES, SERVICES, SURVEYS, SkyService
from ._registry import SIA1_ID, SIA2_ID, TAP_ID, RegistryEntry, registry_answer, sesame_answer
from ._render import SurveyTile, cutout_fits, tile_fits, tile_jpeg
from ._searches import _BadRequest, _float, _multi, _position, _sia1_formats, _sia2_shape
from ._votables import SIA1_FIELDS, SIA2_FIELDS, error_votable, table_votable

__all__ = ["SURVEYS", "EmbeddedSky", "SkyService"]

DATALINK_MIME = "application/x-votable+xml;content=datalink"
_VOTABLE = "application/x-votable+xml"
_EXTENSIONS = {"image/fits": "fits", "image/jpeg": "jpg"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Site:
    """One aiohttp site: a host:port with its own routes."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.port = 0
        self.app = web.Application()
        self.runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.address}:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, 0).start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class EmbeddedSky(StartStop):
    """A simulated VO on loopback (see the module documentation); an async context manager.

    ``address``: where every site listens (default 127.0.0.1, ephemeral ports).
    ``requests`` counts the requests each site answered.
    """

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.requests: Counter[str] = Counter()
        self._sites: dict[str, _Site] = {}
        self._services = {service.key: service for service in SERVICES}
        registry = self._site("registry")
        registry.app.router.add_route("*", "/tap/sync", self._tap_sync)
        registry.app.router.add_get("/sesame", self._sesame)
        for service in SERVICES:
            site = self._site(service.key)
            if service.protocol == "sia":
                site.app.router.add_get("/sia", self._handler(self._sia1, service))
            else:
                site.app.router.add_get("/sia2/query", self._handler(self._sia2, service))
                site.app.router.add_get("/dl", self._handler(self._datalink, service))
                site.app.router.add_get("/soda", self._handler(self._soda, service))
            site.app.router.add_get("/img/{name}", self._handler(self._image, service))
        self._started = False

    def _site(self, name: str) -> _Site:
        site = self._sites[name] = _Site(name, self.address)
        return site

    def _handler(
        self,
        method: Callable[[web.Request, SkyService], Awaitable[web.StreamResponse]],
        service: SkyService,
    ) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests[service.key] += 1
            return await method(request, service)

        return handle

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> Self:
        if self._started:
            raise RuntimeError("this EmbeddedSky was already started")
        self._started = True
        try:
            await asyncio.gather(*(site.start() for site in self._sites.values()))
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(site.stop() for site in self._sites.values()))

    # --- where things are -------------------------------------------------------------

    @property
    def registry_url(self) -> str:
        """The RegTAP service (a TAP base URL)."""
        return self._sites["registry"].base_url + "/tap"

    @property
    def sesame_url(self) -> str:
        """The name resolver, answering ``<url>?<name>`` as Sesame does."""
        return self._sites["registry"].base_url + "/sesame"

    def access_url(self, key: str) -> str:
        """The access URL of a service (``uvot``, ``sdss-a``, ``sdss-b``, ``sitewide``)."""
        service = self._services[key]
        base = self._sites[key].base_url
        if service.protocol == "sia2":
            return base + "/sia2/query"
        if service.format_preset:
            return f"{base}/sia?FORMAT={service.format_preset}&"
        return base + "/sia"

    def environ(self) -> dict[str, str]:
        """Environment variables that point a default ClientConfig at this sky."""
        return {"VOHARVEST_REGISTRY": self.registry_url, "VOHARVEST_SESAME": self.sesame_url}

    def client_config(self, **changes: Any) -> Any:
        """A :class:`~voharvest.ClientConfig` whose registry and Sesame are this sky's."""
        from .._config import ClientConfig, RegistryEndpoint

        return ClientConfig(
            registries=(RegistryEndpoint(self.registry_url),),
            sesame=(self.sesame_url,),
            **changes,
        )

    def entries(self) -> list[RegistryEntry]:
        """What the registry holds: every service, and the registry's own TAP service."""
        entries = [
            RegistryEntry(
                ivoid=service.ivoid,
                short_name=service.short_name,
                title=service.title,
                description=service.description,
                waveband=service.waveband,
                subjects=service.subjects,
                interfaces=(
                    (SIA1_ID, "1.0", self.access_url(service.key))
                    if service.protocol == "sia"
                    else (SIA2_ID, "2.0", self.access_url(service.key)),
                ),
                reference_url=self._sites[service.key].base_url + "/",
            )
            for service in SERVICES
        ]
        entries.append(
            RegistryEntry(
                ivoid="ivo://embedded.sky/tap",
                short_name="EmbeddedTAP",
                title="Embedded sky TAP service (the RegTAP tables)",
                description="The TAP service of the embedded sky's registry: the RegTAP "
                "tables (rr.resource, rr.capability, rr.interface, ...).",
                waveband=(),
                subjects=("virtual observatory",),
                interfaces=((TAP_ID, "1.1", self.registry_url),),
                reference_url=self._sites["registry"].base_url + "/",
            )
        )
        return entries

    def describe(self) -> dict[str, Any]:
        """Where everything is, as JSON-ready values."""
        return {
            "registry_url": self.registry_url,
            "sesame_url": self.sesame_url,
            "services": {
                s.key: {"ivoid": s.ivoid, "title": s.title, "access_url": self.access_url(s.key)}
                for s in SERVICES
            },
        }

    def image_url(self, key: str, tile: SurveyTile, mime: str) -> str:
        return f"{self._sites[key].base_url}/img/{tile.id}.{_EXTENSIONS[mime]}"

    # --- registry and names ---------------------------------------------------------

    async def _tap_sync(self, request: web.Request) -> web.StreamResponse:
        self.requests["registry"] += 1
        params: dict[str, str] = {}
        for key, value in request.query.items():
            params.setdefault(key.upper(), value)
        if request.method == "POST":
            for key, item in (await request.post()).items():
                if isinstance(item, str):
                    params.setdefault(key.upper(), item)
        status, body = registry_answer(self.entries(), params)
        return web.Response(status=status, body=body, content_type=_VOTABLE)

    async def _sesame(self, request: web.Request) -> web.StreamResponse:
        self.requests["sesame"] += 1
        name = unquote(request.query_string)
        return web.Response(body=sesame_answer(name), content_type="text/xml")

    # --- SIA 1.0 ------------------------------------------------------------------------

    async def _sia1(self, request: web.Request, service: SkyService) -> web.StreamResponse:
        params = _multi(request.query.items())
        survey = SURVEYS[service.survey]
        try:
            formats = params.get("FORMAT", [])
            preset = service.format_preset
            if preset is not None and any(value.lower() != preset for value in formats):
                others = ", ".join(v for v in formats if v.lower() != preset)
                raise _BadRequest(f"FORMAT {others} is not supported: this service serves {preset}")
            pos = params.get("POS", [])
            if len(pos) != 1 or len(pos[0].split(",")) != 2:
                raise _BadRequest("POS is required, once, as 'ra,dec' in degrees (ICRS)")
            ra_text, dec_text = pos[0].split(",")
            ra, dec = _position(_float(ra_text, "POS"), _float(dec_text, "POS"), "POS")
            sizes = [_float(s, "SIZE") for s in params.get("SIZE", ["0"])[0].split(",")]
            if not 1 <= len(sizes) <= 2 or any(not 0 <= s <= 10 for s in sizes):
                raise _BadRequest("SIZE: one or two angles in [0, 10] degrees")
        except _BadRequest as exc:
            return web.Response(body=error_votable(str(exc)), content_type=_VOTABLE)
        tiles = survey.tiles_near(ra, dec, max(sizes) / 2, service.images_per_search)
        low, high = BAND_RANGES[survey.band]
        rows: list[tuple[object, ...]] = []
        for tile in tiles:
            for mime in _sia1_formats(formats, service.formats):
                kind = "JPEG preview" if mime == "image/jpeg" else "FITS"
                rows.append(
                    (
                        f"{service.short_name} {survey.band} frame {tile.id} ({kind})",
                        tile.ra,
                        tile.dec,
                        2,
                        (survey.naxis, survey.naxis),
                        (survey.scale_arcsec / 3600.0, survey.scale_arcsec / 3600.0),
                        mime,
                        tile.mjd,
                        survey.instrument,
                        f"{survey.band} ({low * 1e9:.0f}-{high * 1e9:.0f} nm)",
                        None,
                        self.image_url(service.key, tile, mime),
                    )
                )
        body = table_votable(SIA1_FIELDS, rows, description=service.title)
        return web.Response(body=body, content_type=_VOTABLE)

    # --- SIA 2.0, DataLink, SODA ------------------------------------------------------

    def _did(self, service: SkyService, tile: SurveyTile) -> str:
        return f"{service.ivoid}?{tile.id}"

    def _tile_of(self, service: SkyService, did: str) -> SurveyTile | None:
        prefix = service.ivoid + "?"
        if not did.startswith(prefix):
            return None
        return SURVEYS[service.survey].tile_by_id(did[len(prefix) :])

    async def _sia2(self, request: web.Request, service: SkyService) -> web.StreamResponse:
        params = _multi(request.query.items())
        survey = SURVEYS[service.survey]
        try:
            shapes = [_sia2_shape(text) for text in params.get("POS", [])]
            if not shapes:
                raise _BadRequest("this service needs a POS (CIRCLE, RANGE or POLYGON)")
        except _BadRequest as exc:
            return web.Response(body=error_votable(str(exc)), content_type=_VOTABLE)
        wanted = {value.strip().lower() for value in params.get("FORMAT", [])}
        if wanted and not wanted & {"image/fits", DATALINK_MIME}:
            return web.Response(body=table_votable(SIA2_FIELDS, []), content_type=_VOTABLE)
        tiles: dict[str, SurveyTile] = {}
        for ra, dec, radius in shapes:
            for tile in survey.tiles_near(ra, dec, radius, service.images_per_search):
                tiles.setdefault(tile.id, tile)
        low, high = BAND_RANGES[survey.band]
        size = survey.naxis * survey.scale_arcsec / 3600.0
        rows: list[tuple[object, ...]] = []
        for tile in list(tiles.values())[: service.images_per_search]:
            did = self._did(service, tile)
            links = f"{self._sites[service.key].base_url}/dl?ID={quote(did, safe='')}"
            corners = tile.wcs().all_pix2world(
                [
                    [0, 0],
                    [survey.naxis - 1, 0],
                    [survey.naxis - 1, survey.naxis - 1],
                    [0, survey.naxis - 1],
                ],
                0,
            )
            rows.append(
                (
                    "image", 2, "embedded/sitewide", tile.id,
                    f"{survey.instrument} {survey.band} frame {tile.id}", did, links,
                    DATALINK_MIME, None, f"frame {tile.id}", tile.ra, tile.dec,
                    size * math.sqrt(2),
                    "POLYGON ICRS " + " ".join(f"{r % 360.0:.6f} {d:.6f}" for r, d in corners),
                    survey.psf_fwhm_arcsec, tile.mjd, tile.mjd + 0.01, low, high,
                    "phot.count", survey.telescope, survey.instrument,
                )
            )  # fmt: skip
        body = table_votable(SIA2_FIELDS, rows, description=service.title)
        return web.Response(body=body, content_type=_VOTABLE)

    async def _datalink(self, request: web.Request, service: SkyService) -> web.StreamResponse:
        did = request.query.get("ID", "")
        tile = self._tile_of(service, did)
        names = ("ID", "access_url", "service_def", "error_message", "description",
                 "semantics", "content_type")  # fmt: skip
        fields = "".join(f'<FIELD name="{n}" datatype="char" arraysize="*"/>' for n in names)
        fields += '<FIELD name="content_length" datatype="long"><VALUES null="-1"/></FIELD>'
        meta = ""
        rows: list[tuple[object, ...]]
        if tile is None:
            rows = [(did, None, None, f"NotFoundFault: {did} is not known here", None,
                     "#this", None, -1)]  # fmt: skip
        else:
            base = self._sites[service.key].base_url
            rows = [
                (did, f"{base}/img/{tile.id}.fits", None, None, "The full frame (FITS)",
                 "#this", "image/fits", len(await asyncio.to_thread(tile_fits, tile))),
                (did, f"{base}/img/{tile.id}.jpg", None, None, "A JPEG preview",
                 "#preview", "image/jpeg", -1),
                (did, None, "soda", None, "Cutouts of the frame (SODA)", "#cutout",
                 "image/fits", -1),
            ]  # fmt: skip
            meta = (
                '<RESOURCE type="meta" utype="adhoc:service" ID="soda">'
                '<PARAM name="standardID" datatype="char" arraysize="*"'
                ' value="ivo://ivoa.net/std/SODA#sync-1.0"/>'
                f'<PARAM name="accessURL" datatype="char" arraysize="*" value="{base}/soda"/>'
                '<GROUP name="inputParams">'
                f'<PARAM name="ID" datatype="char" arraysize="*" value={quoteattr(did)}/>'
                '<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle"'
                ' unit="deg" value=""/>'
                '<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon"'
                ' unit="deg" value=""/>'
                "</GROUP></RESOURCE>"
            )
        cells = "".join(
            "<TR>"
            + "".join("<TD/>" if c is None else f"<TD>{escape(str(c))}</TD>" for c in row)
            + "</TR>"
            for row in rows
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
            '<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/>'
            f"<TABLE>{fields}<DATA><TABLEDATA>{cells}</TABLEDATA></DATA></TABLE></RESOURCE>"
            f"{meta}</VOTABLE>"
        )
        return web.Response(body=body.encode(), headers={"Content-Type": DATALINK_MIME})

    async def _soda(self, request: web.Request, service: SkyService) -> web.StreamResponse:
        tile = self._tile_of(service, request.query.get("ID", ""))
        if tile is None:
            return web.Response(status=422, text="UsageFault: unknown ID\n")
        try:
            if "CIRCLE" in request.query:
                ra, dec, radius = (float(x) for x in request.query["CIRCLE"].split())
            elif "POLYGON" in request.query:
                values = [float(x) for x in request.query["POLYGON"].split()]
                ras, decs = values[0::2], values[1::2]
                ra, dec = sum(ras) / len(ras), sum(decs) / len(decs)
                radius = (max(decs) - min(decs)) / 2
            else:
                return web.Response(status=422, text="UsageFault: give CIRCLE or POLYGON\n")
        except ValueError:
            return web.Response(status=422, text="UsageFault: unreadable region\n")
        body = await asyncio.to_thread(cutout_fits, tile, ra, dec, radius)
        if body is None:
            return web.Response(status=422, text="UsageFault: the region misses the frame\n")
        return web.Response(body=body, content_type="image/fits")

    # --- images ---------------------------------------------------------------------

    async def _image(self, request: web.Request, service: SkyService) -> web.StreamResponse:
        stem, _, extension = request.match_info["name"].rpartition(".")
        tile = SURVEYS[service.survey].tile_by_id(stem)
        offered = {_EXTENSIONS[m]: m for m in service.formats}
        if service.protocol == "sia2":
            offered["jpg"] = "image/jpeg"  # the DataLink preview
        if tile is None or extension not in offered:
            raise web.HTTPNotFound(text="no such image\n")
        make = tile_fits if extension == "fits" else tile_jpeg
        body = await asyncio.to_thread(make, tile)
        return web.Response(body=body, content_type=offered[extension])
