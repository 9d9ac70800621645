"""A small aiohttp server on 127.0.0.1 for client tests: handlers per test, every request logged."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    """One request as the server saw it."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class LocalServer:
    host: str = "127.0.0.1"
    hits: list[Hit] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    _runner: web.AppRunner | None = None
    _routes: dict[tuple[str, str], Handler] = field(default_factory=dict)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(
            Hit(
                time.monotonic(),
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
            )
        )
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            # A route ending in "/*" takes every path below it.
            for (method, path), candidate in self._routes.items():
                if method == request.method and path.endswith("/*"):
                    if request.path.startswith(path[:-1]):
                        handler = candidate
                        break
        if handler is None:
            return web.Response(status=404, text=f"no route {request.method} {request.path}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def start(self) -> LocalServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)


def votable_response(data: bytes, status: int = 200) -> web.Response:
    return web.Response(body=data, status=status, content_type="application/x-votable+xml")
