"""One TLS context for every HTTP client of a process: built once (about 20 ms of CPU
each time otherwise, several times per wallet command), and still verifying."""

from __future__ import annotations

import ssl

import httpcore
import httpx

from protocol.ipfs.wide import wide_transport
from protocol.tls import client_tls
from wallet.coordinator import CoordinatorClient


def _context_of(transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> object:
    pool = getattr(transport, "_pool", None)
    assert isinstance(pool, httpcore.ConnectionPool | httpcore.AsyncConnectionPool)
    return pool._ssl_context


def test_clients_share_one_context() -> None:
    assert client_tls() is client_tls()
    assert _context_of(wide_transport()) is client_tls()
    with CoordinatorClient("http://127.0.0.1:9") as coordinator:
        assert _context_of(coordinator._http._transport) is client_tls()


def test_the_shared_context_verifies_certificates() -> None:
    context = client_tls()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # trusted roots loaded
