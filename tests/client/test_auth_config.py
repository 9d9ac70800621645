"""Credentials as configuration: scopes, sources, masking, pickling; choice held to pyvo."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from tests.client.tls import ScratchCA
from voharvest import (
    BasicAuth,
    BearerToken,
    ClientCertificate,
    ClientConfig,
    Cookies,
    Credentials,
    ParameterError,
)
from voharvest._auth import BASIC, CLIENT_CERTIFICATE, COOKIE, TOKEN, Scope
from voharvest._security import Authenticator, challenge_schemes
from voharvest.protocol.vosi import ANONYMOUS, parse_capabilities

SECRET = "pw-91xQ-secret"


def test_a_scope_is_one_origin_and_whole_path_segments():
    scope = Scope.parse("https://Archive.Example.org/tap")
    assert scope == Scope("https", "archive.example.org", 443, "/tap")
    assert scope.covers("https://archive.example.org/tap")
    assert scope.covers("https://archive.example.org:443/tap/sync?QUERY=1")
    assert not scope.covers("https://archive.example.org/tapir")
    assert not scope.covers("http://archive.example.org/tap/sync")  # another scheme
    assert not scope.covers("https://archive.example.org:8443/tap/sync")  # another port
    assert not scope.covers("https://evil.example.org/tap/sync")
    assert not scope.covers("https://archive.example.org.evil.net/tap")
    assert Scope.parse("http://127.0.0.1:8080").covers("http://127.0.0.1:8080/anything")
    for bad in ("ftp://x/", "https://user:pw@x/", "https://x/?a=1", "not a url"):
        with pytest.raises(ParameterError):
            Scope.parse(bad)


def test_repr_masks_every_secret(tmp_path: Path):
    cert = ClientCertificate("https://a.example", tmp_path / "c.pem")
    entries = (
        BasicAuth("https://a.example", "alice", SECRET),
        BearerToken("https://a.example", SECRET),
        Cookies("https://a.example", {"sid": SECRET}),
        cert,
    )
    config = ClientConfig(credentials=Credentials(entries=entries))
    for text in (repr(config), str(config), *map(repr, entries), repr(config.credentials)):
        assert SECRET not in text
    assert "alice" in repr(entries[0]) and "sid" in repr(entries[2])


def test_secrets_given_in_code_are_never_pickled(tmp_path: Path):
    for entry in (
        BasicAuth("https://a.example", "alice", SECRET),
        BearerToken("https://a.example", SECRET),
        Cookies("https://a.example", {"sid": SECRET}),
    ):
        with pytest.raises(TypeError, match="never pickled"):
            pickle.dumps(ClientConfig(credentials=Credentials(entries=(entry,))))
    # Files and the environment travel as names, read where the client opens.
    named = Credentials(
        netrc=str(tmp_path / "netrc"),
        token_files=((None, str(tmp_path / "tokens")),),
        cert_files=(ClientCertificate("https://a.example", tmp_path / "c.pem"),),
        environment=True,
    )
    assert pickle.loads(pickle.dumps(ClientConfig(credentials=named))).credentials == named


def test_netrc_gives_https_only_unless_the_machine_is_a_url(tmp_path: Path):
    path = tmp_path / "netrc"
    path.write_text(
        f"machine archive.example.org login alice password {SECRET}\n"
        f"machine http://127.0.0.1:8080/ login bob password {SECRET}\n"
        f"default login everyone password {SECRET}\n"
    )
    path.chmod(0o600)
    loaded = {c.scope.origin: c for c in Credentials(netrc=str(path)).load()}
    assert set(loaded) == {"https://archive.example.org:443", "http://127.0.0.1:8080"}
    assert isinstance(loaded["http://127.0.0.1:8080"], BasicAuth)
    assert loaded["http://127.0.0.1:8080"].username == "bob"


def test_a_broken_netrc_is_a_parameter_error_without_its_lines(tmp_path: Path):
    path = tmp_path / "netrc"
    path.write_text(f"machine x login alice password {SECRET} bogus\n")
    path.chmod(0o600)
    with pytest.raises(ParameterError) as caught:
        Credentials(netrc=str(path)).load()
    assert SECRET not in str(caught.value)
    with pytest.raises(ParameterError):
        Credentials(netrc=str(tmp_path / "missing")).load()


def test_token_files_one_token_or_scope_lines(tmp_path: Path):
    single = tmp_path / "token"
    single.write_text(SECRET + "\n")
    lines = tmp_path / "tokens"
    lines.write_text(f"# comment\nhttps://a.example/tap {SECRET}1\n\nhttps://b.example {SECRET}2\n")
    loaded = Credentials(
        token_files=(("https://c.example", str(single)), (None, str(lines)))
    ).load()
    assert [(str(t.scope), t.token) for t in loaded if isinstance(t, BearerToken)] == [
        ("https://c.example:443/", SECRET),
        ("https://a.example:443/tap", SECRET + "1"),
        ("https://b.example:443/", SECRET + "2"),
    ]
    lines.write_text(f"{SECRET}\n")
    with pytest.raises(ParameterError) as caught:
        Credentials(token_files=((None, str(lines)),)).load()
    assert SECRET not in str(caught.value)


def test_the_environment_is_read_where_load_runs(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(SECRET)
    credentials = Credentials.from_env()
    assert credentials.load({}) == ()
    environ = {
        "VOHARVEST_TOKEN_FILE": f"https://a.example={token}",
        "VOHARVEST_CERT": f"https://b.example={tmp_path / 'c.pem'},{tmp_path / 'k.pem'}",
    }
    loaded = credentials.load(environ)
    assert {type(c).__name__ for c in loaded} == {"BearerToken", "ClientCertificate"}
    cert = next(c for c in loaded if isinstance(c, ClientCertificate))
    assert cert.key_file == str(tmp_path / "k.pem")


def test_credentials_refuse_bad_values():
    with pytest.raises(ParameterError):
        BearerToken("https://a.example", "two\nlines")
    with pytest.raises(ParameterError):
        BasicAuth("https://a.example", "a:b", "pw")
    with pytest.raises(ParameterError):
        Cookies("https://a.example", {"a;b": "x"})
    with pytest.raises(ParameterError):
        ClientCertificate("http://a.example", "c.pem")  # a certificate needs TLS
    with pytest.raises(ParameterError):
        ClientConfig(credentials=(BearerToken("https://a.example", "t"),))  # type: ignore[arg-type]


def test_challenge_schemes():
    assert challenge_schemes('Basic realm="x"') == ("Basic",)
    assert challenge_schemes('Bearer realm="a, b", error="invalid_token"') == ("Bearer",)
    assert challenge_schemes("Negotiate, Basic realm=x") == ("Negotiate", "Basic")
    assert challenge_schemes("") == () and challenge_schemes(None) == ()


CAPABILITIES = b"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">
  <capability standardID="ivo://ivoa.net/std/TAP">
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://a.example/tap</accessURL>
      <securityMethod standardID="ivo://ivoa.net/sso#BasicAA"/>
    </interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/SIA#query-2.0">
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://a.example/sia</accessURL>
    </interface>
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://a.example/sia</accessURL>
      <securityMethod standardID="ivo://ivoa.net/sso#cookie"/>
    </interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/SODA#sync-1.0">
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="full">https://a.example/soda/sync</accessURL>
      <securityMethod standardID="ivo://ivoa.net/sso#token"/>
    </interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/SIA">
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://b.example/sia</accessURL>
    </interface>
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://b.example/private</accessURL>
      <securityMethod standardID="ivo://ivoa.net/sso#tls-with-certificate"/>
    </interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/TAP">
    <interface xsi:type="vs:ParamHTTP" role="std">
      <accessURL use="base">https://c.example/tap</accessURL>
      <securityMethod standardID="ivo://ivoa.net/sso#BasicAA"/>
    </interface>
  </capability>
</vosi:capabilities>
"""


def test_capabilities_give_the_methods_per_access_url():
    rules = {(r.url, r.exact): r.methods for r in parse_capabilities(CAPABILITIES)}
    assert rules[("https://a.example/tap", False)] == {BASIC}
    assert rules[("https://a.example/sia", False)] == {ANONYMOUS, COOKIE}
    assert rules[("https://a.example/soda/sync", True)] == {TOKEN}
    assert rules[("https://b.example/private", False)] == {CLIENT_CERTIFICATE}


def _ours(cert: Path, key: Path) -> Authenticator:
    authenticator = Authenticator(
        [
            BasicAuth("https://a.example", "alice", SECRET),
            Cookies("https://a.example", {"sid": SECRET}),
            BearerToken("https://a.example", SECRET),
            ClientCertificate("https://b.example", cert, key),
        ]
    )
    authenticator.learn(parse_capabilities(CAPABILITIES))
    return authenticator


def test_the_choice_per_url_is_pyvos_within_each_credentials_origin(tmp_path: Path):
    """pyvo's AuthSession (AuthURLs + CredentialStore) is the oracle, offline.

    pyvo binds a credential to a method, not to an origin; voharvest binds it
    to both. So the decisions agree wherever pyvo's credential would stay on
    its origin, and differ exactly where it would travel elsewhere (c.example
    accepts BasicAA, but alice's password belongs to a.example) or where no
    capabilities speak (a download URL on a.example: pyvo goes anonymous, we
    send the credential the user bound to that origin).
    """
    pytest.importorskip("pyvo")
    from pyvo.auth import AuthSession
    from pyvo.io.vosi import parse_capabilities as pyvo_capabilities

    pyvo_session = AuthSession()
    pyvo_session.update_from_capabilities(pyvo_capabilities(io.BytesIO(CAPABILITIES)))
    pyvo_session.credentials.set_password("alice", SECRET)
    pyvo_session.credentials.set_cookie("sid", SECRET)
    pyvo_session.credentials.set(TOKEN, object())
    cert, key = ScratchCA(tmp_path).issue("alice", server=False)
    pyvo_session.credentials.set_client_certificate(str(cert))

    def pyvo_choice(url: str) -> str:
        allowed = pyvo_session._auth_urls.allowed_auth_methods(url)
        return str(pyvo_session.credentials.negotiate_method(allowed))

    ours = _ours(cert, key)
    agreeing = [
        "https://a.example/tap/sync?QUERY=SELECT+1",
        "https://a.example/tap/async/job1",
        "https://a.example/sia/query?POS=CIRCLE+1+2+3",
        "https://a.example/soda/sync",
        "https://b.example/sia?POS=1,2",
        "https://b.example/private/x",
        "https://d.example/anything",
    ]
    for url in agreeing:
        assert ours.choose(url).method == pyvo_choice(url), url
    assert ours.choose("https://a.example/tap/sync").method == BASIC
    assert ours.choose("https://a.example/sia/query").method == COOKIE  # over anonymous
    # pyvo would send alice's password to c.example; we send nothing there.
    assert pyvo_choice("https://c.example/tap/sync") == BASIC
    assert ours.choose("https://c.example/tap/sync").credential is None
    # No capabilities for the download URL: pyvo goes anonymous, we use a.example's own.
    assert pyvo_choice("https://a.example/files/x.fits") == ANONYMOUS
    assert ours.choose("https://a.example/files/x.fits").method == BASIC
    # The exact access URL is exact: a path below it is not covered by it.
    assert ours.choose("https://a.example/soda/sync").method == TOKEN


async def test_an_unreadable_certificate_fails_when_the_client_opens(tmp_path: Path):
    from voharvest import VOClient

    broken = tmp_path / "cert.pem"
    broken.write_text("not a certificate")
    config = ClientConfig(
        credentials=Credentials(cert_files=(ClientCertificate("https://a.example", broken),))
    )
    with pytest.raises(ParameterError, match="can't load"):
        async with VOClient(config):
            pass
