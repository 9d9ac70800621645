"""A tiny SIA v1 service for harvest tests: records per position, images counting fetches."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections import Counter

import numpy as np
from aiohttp import web
from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

from tests.servers import LocalServer


def fits_bytes(name: str, size: int = 8640) -> bytes:
    header = f"SIMPLE  =                    T / {name}".ljust(80).encode()
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    body = np.random.default_rng(seed).bytes(size - len(header))
    return header + body


class MiniSky:
    """``/sia``: N FITS records per position (``/img/<ra>_<dec>_<i>.fits``); counts fetches."""

    def __init__(
        self,
        server: LocalServer,
        per_search: int = 2,
        shared: bool = False,
        *,
        image_size: int = 8640,
        chunk_delay: float = 0.0,
    ) -> None:
        self.server = server
        self.per_search = per_search
        self.shared = shared  # every position returns the same images
        self.image_size = image_size
        self.chunk_delay = chunk_delay  # seconds between 16 KiB chunks: slow enough to kill
        self.title = "Field {name}"  # what the service calls each image (format with name)
        self.fetches: Counter[str] = Counter()
        self.range_fetches: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.broken: set[str] = set()
        server.route("GET", "/sia", self.sia)
        server.route("GET", "/img/*", self.image)

    def names(self, ra: float, dec: float) -> list[str]:
        base = "shared" if self.shared else f"{ra:.4f}_{dec:.4f}"
        return [f"{base}_{i}.fits" for i in range(self.per_search)]

    async def sia(self, request: web.Request) -> web.Response:
        ra, dec = (float(x) for x in request.query["POS"].split(","))
        doc = VOTableFile()
        resource = Resource()
        resource.type = "results"
        doc.resources.append(resource)
        table = TableElement(doc)
        resource.tables.append(table)
        table.fields.extend(
            [
                Field(
                    doc, name="url", datatype="char", arraysize="*", ucd="VOX:Image_AccessReference"
                ),
                Field(doc, name="fmt", datatype="char", arraysize="*", ucd="VOX:Image_Format"),
                Field(doc, name="title", datatype="char", arraysize="*", ucd="VOX:Image_Title"),
                Field(doc, name="ra", datatype="double", ucd="POS_EQ_RA_MAIN"),
                Field(doc, name="dec", datatype="double", ucd="POS_EQ_DEC_MAIN"),
            ]
        )
        names = self.names(ra, dec)
        table.create_arrays(len(names) + 1)
        for i, name in enumerate(names):
            table.array[i] = (
                self.server.url(f"/img/{name}"),
                "image/fits",
                self.title.format(name=name),
                ra,
                dec,
            )
        # A preview that a FITS-only harvest must leave alone.
        table.array[len(names)] = (
            self.server.url("/preview.html"),
            "text/html",
            "preview",
            ra,
            dec,
        )
        buffer = io.BytesIO()
        doc.to_xml(buffer)
        return web.Response(body=buffer.getvalue(), content_type="text/xml")

    async def image(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]
        self.fetches[name] += 1
        data = fits_bytes(name, self.image_size)
        if name in self.broken:
            response = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await response.prepare(request)
            await response.write(data[:100])
            request.transport.close()
            return response
        start = 0
        wanted = request.headers.get("Range", "")
        if wanted.startswith("bytes=") and request.headers.get("If-Range") == '"1"':
            start = int(wanted[6:].split("-")[0])
            self.range_fetches[name] += 1
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        headers = {
            "Content-Length": str(len(data) - start),
            "Content-Type": "image/fits",
            "ETag": '"1"',
        }
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        for offset in range(start, len(data), 16384):
            await response.write(data[offset : offset + 16384])
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        if start == 0:
            self.completed[name] += 1
        return response
