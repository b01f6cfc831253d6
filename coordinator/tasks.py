"""Containing failures in the coordinator's background tasks.

Every long-running loop (chain watcher, settlement batcher, advert subscription, book
maintenance, benchmark challenger) handles one item at a time: a block range, a batch, an
advert, a provider. Whatever one item raises is logged with what it was about and the loop
goes on; a malformed message from one provider never stops the coordinator. Expected
failures (:class:`GpuMarketError`) log one line; anything else logs its traceback, since it
points at a bug here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from protocol.errors import GpuMarketError


@contextmanager
def contained(log: logging.Logger, what: str) -> Iterator[None]:
    """Log and swallow an ``Exception`` from the block (never trio's cancellation)."""
    try:
        yield
    except (GpuMarketError, trio.TooSlowError) as exc:
        log.warning("%s: %s", what, exc or type(exc).__name__)
    except Exception:
        log.exception("%s crashed", what)
