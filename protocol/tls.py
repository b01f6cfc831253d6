"""The TLS context every HTTP client of this process shares.

Building one (httpx's default: the trust store, honouring ``SSL_CERT_FILE`` and
``SSL_CERT_DIR``) takes about 20 ms of CPU, and a wallet command opens several clients
(the coordinator's, and two per IPFS content store). It is built once, on first use, and
never changed afterwards, so sharing it shares nothing but the trusted roots.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls() -> ssl.SSLContext:
    """The process's TLS context for HTTP clients (certificates verified)."""
    return httpx.create_ssl_context()
