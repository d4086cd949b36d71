"""The one cache of fetched signing keys, shared by web (IAP JWKS) and worker (OIDC certs)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from offload.signingkeys import SigningKeys, SigningKeysError
from web.auth import IapAuth
from worker.auth import OidcAuthenticator


class KeyServer:
    """A certs URL on loopback that counts its fetches and can be made to fail."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {"k1": "one"}
        self.fetches = 0
        self.failing = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.fetches += 1
                body = json.dumps(outer.keys).encode()
                self.send_response(503 if outer.failing else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[KeyServer]:
    s = KeyServer()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_keys_are_fetched_once_and_served_from_the_cache(server: KeyServer) -> None:
    keys = SigningKeys(server.url, dict, ttl=300)
    assert [keys.key("k1") for _ in range(5)] == ["one"] * 5
    assert server.fetches == 1


def test_an_unknown_key_id_refetches_at_most_once_per_min_refresh(server: KeyServer) -> None:
    keys = SigningKeys(server.url, dict, ttl=300, min_refresh=0)
    assert keys.key("k1") == "one"
    server.keys = {"k2": "two"}  # rotated
    assert keys.key("k2") == "two"
    assert server.fetches == 2
    slow = SigningKeys(server.url, dict, ttl=300, min_refresh=3600)
    assert slow.key("k2") == "two"
    for _ in range(10):  # forged key ids do not turn every request into a fetch
        assert slow.key("forged") is None
    assert server.fetches == 3


def test_a_key_held_stays_good_while_the_url_fails_and_new_ones_are_refused(
    server: KeyServer,
) -> None:
    keys = SigningKeys(server.url, dict, ttl=0, min_refresh=0)
    assert keys.key("k1") == "one"
    server.failing = True
    assert keys.key("k1") == "one"
    fetches = server.fetches
    with pytest.raises(SigningKeysError):
        SigningKeys(server.url, dict, ttl=300).key("k1")
    assert server.fetches == fetches + 1


def test_a_failed_fetch_is_not_repeated_by_every_request(server: KeyServer) -> None:
    server.failing = True
    keys = SigningKeys(server.url, dict, ttl=300)
    for _ in range(5):
        with pytest.raises(SigningKeysError):
            keys.key("k1")
    assert server.fetches == 1


def test_web_and_worker_use_the_same_cache() -> None:
    iap = IapAuth(audience="/projects/1/apps/a", certs_url="http://127.0.0.1:9/", admins="")
    oidc = OidcAuthenticator(audience="a", service_account="s", certs_url="http://127.0.0.1:9/")
    assert type(iap._keys) is type(oidc._certs) is SigningKeys
