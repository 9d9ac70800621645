"""Protected VOFarm hosts: what a host asks of its clients before it answers.

A host with ``HostConfig(auth=FarmAuth(...))`` refuses every request (searches,
TAP, images) that lacks the credential: 401 with a ``WWW-Authenticate``
challenge for basic auth and bearer tokens (RFC 7617, RFC 6750), 403 for a
missing cookie or client certificate. Its VOSI capabilities (``/capabilities``,
always anonymous) list the method as each interface's ``securityMethod``.
A client certificate needs ``HostConfig(tls=...)``: a server context that asks
for client certificates (``verify_mode = CERT_OPTIONAL``) and trusts their CA.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .._exceptions import ParameterError

if TYPE_CHECKING:
    from ._farm import FarmHost

__all__ = ["FARM_METHODS", "FarmAuth", "capabilities"]

#: The methods a host can require, with their IVOA SSO identifiers.
FARM_METHODS = {
    "basic": "ivo://ivoa.net/sso#BasicAA",
    "token": "ivo://ivoa.net/sso#token",
    "cookie": "ivo://ivoa.net/sso#cookie",
    "certificate": "ivo://ivoa.net/sso#tls-with-certificate",
}


@dataclass(frozen=True, kw_only=True, repr=False)
class FarmAuth:
    """What a protected host accepts: ``method`` and the secret it checks.

    ``basic``: ``username`` and ``password``; ``token``: ``secret`` as a bearer
    token; ``cookie``: a cookie ``cookie_name`` whose value is ``secret``;
    ``certificate``: any client certificate the TLS context verified (its
    subject's commonName must be ``username`` when that is given).
    ``anonymous_too``: the capabilities also list an anonymous interface and
    requests without a credential are served (a partly public service).
    """

    method: str
    secret: str = ""
    username: str = ""
    password: str = ""
    cookie_name: str = "session"
    anonymous_too: bool = False

    def __post_init__(self) -> None:
        if self.method not in FARM_METHODS:
            raise ParameterError(f"FarmAuth.method: expected one of {', '.join(FARM_METHODS)}")

    def __repr__(self) -> str:
        return f"FarmAuth(method={self.method!r})"

    def refusal(self, request: web.Request) -> web.Response | None:
        """None if ``request`` carries the credential, else the answer refusing it."""
        if self._accepted(request) or (self.anonymous_too and not self._offered(request)):
            return None
        if self.method == "basic":
            challenge = 'Basic realm="vofarm", charset="UTF-8"'
            return web.Response(status=401, text="login needed\n", headers=self._www(challenge))
        if self.method == "token":
            challenge = 'Bearer realm="vofarm"' + (
                ', error="invalid_token"' if "Authorization" in request.headers else ""
            )
            return web.Response(status=401, text="token needed\n", headers=self._www(challenge))
        return web.Response(status=403, text=f"{self.method} needed\n")

    @staticmethod
    def _www(challenge: str) -> dict[str, str]:
        return {"WWW-Authenticate": challenge}

    def _offered(self, request: web.Request) -> bool:
        return "Authorization" in request.headers or "Cookie" in request.headers

    def _accepted(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.method == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return hmac.compare_digest(header, f"Basic {expected}")
        if self.method == "token":
            return hmac.compare_digest(header, f"Bearer {self.secret}")
        if self.method == "cookie":
            return hmac.compare_digest(request.cookies.get(self.cookie_name, ""), self.secret)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if not peer:
            return False
        if not self.username:
            return True
        subject = {key: value for rdn in peer.get("subject", ()) for key, value in rdn}
        return bool(subject.get("commonName") == self.username)


def capabilities(host: FarmHost, auth: FarmAuth | None) -> bytes:
    """A host's VOSI capabilities, each interface with the method ``auth`` requires
    (and an anonymous twin when anonymous access is allowed too)."""
    methods = [""]
    if auth is not None:
        methods = [f'<securityMethod standardID="{FARM_METHODS[auth.method]}"/>']
        if auth.anonymous_too:
            methods.append("")
    services = (
        ("ivo://ivoa.net/std/SIA", host.sia1_url.split("?")[0]),
        ("ivo://ivoa.net/std/SIA#query-2.0", host.sia2_url),
        ("ivo://ivoa.net/std/TAP", host.tap_url),
    )
    capabilities = "".join(
        f'<capability standardID="{standard}">'
        + "".join(
            f'<interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="base">{url}'
            f"</accessURL>{method}</interface>"
            for method in methods
        )
        + "</capability>"
        for standard, url in services
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">'
        f"{capabilities}</vosi:capabilities>"
    ).encode()
