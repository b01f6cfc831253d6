"""Transport errors, and the one place where libp2p's exceptions become them.

Every failure a caller of :mod:`protocol.p2p` can see is a
:class:`protocol.errors.TransportError`::

    TransportError
    ├── DialError              no connection to the peer could be opened
    ├── ProtocolNotSupported   the peer does not speak the requested protocol id
    ├── RequestTimeout         a read, write or handler ran past its deadline
    ├── StreamResetError       the stream was reset or closed before the exchange ended
    ├── OversizedMessage       a frame declares more bytes than the protocol allows
    ├── FrameError             a frame header is malformed
    └── RemoteError            the peer answered with an error reply

:func:`translate_errors` maps libp2p's exceptions (and trio's timeouts) onto this tree
with ``raise ... from exc``, so no libp2p exception type leaks out of the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import ConnectionFailure, StreamFailure
from libp2p.io.exceptions import IOException
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamReset
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    MultiselectError,
    ProtocolNotSupportedError,
)
from libp2p.stream_muxer.exceptions import MuxedConnError, MuxedStreamError

from protocol.errors import TransportError


class DialError(TransportError):
    """No connection to ``peer`` could be opened."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"cannot dial {peer}: {reason}")


class ProtocolNotSupported(TransportError):
    """The remote peer answered ``operation`` by refusing its protocol id."""

    def __init__(self, operation: str, reason: str = "") -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"{operation}: the peer does not support this protocol")


class RequestTimeout(TransportError):
    """``operation`` did not finish within ``seconds``."""

    def __init__(self, operation: str, seconds: float) -> None:
        self.operation = operation
        self.seconds = seconds
        super().__init__(f"{operation} timed out after {seconds:g} s")


class StreamResetError(TransportError):
    """The stream ended (reset, closed or EOF) before the exchange was complete."""


class OversizedMessage(TransportError):
    """A frame declares ``size`` bytes where at most ``limit`` are allowed."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")


class FrameError(TransportError):
    """A frame header cannot be parsed."""


class RemoteError(TransportError):
    """The peer answered with an error reply (``code`` and its ``reason``)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"peer replied with error {code}: {reason}")


@contextmanager
def translate_errors(operation: str, *, timeout: float | None = None) -> Iterator[None]:
    """Run the body with libp2p and trio failures re-raised as :class:`TransportError`.

    ``operation`` names what was being done (for the message); ``timeout`` is the deadline
    that a :class:`trio.TooSlowError` refers to.
    """
    try:
        yield
    except TransportError:
        raise
    except trio.TooSlowError as exc:
        raise RequestTimeout(operation, timeout if timeout is not None else 0.0) from exc
    except ProtocolNotSupportedError as exc:
        raise ProtocolNotSupported(operation, str(exc)) from exc
    except (MultiselectClientError, MultiselectError) as exc:
        raise ProtocolNotSupported(operation, str(exc)) from exc
    except (StreamEOF, StreamReset, StreamClosed, MuxedStreamError) as exc:
        raise StreamResetError(f"{operation}: stream ended ({type(exc).__name__})") from exc
    except (SwarmException, ConnectionFailure, MuxedConnError) as exc:
        raise DialError(operation, str(exc) or type(exc).__name__) from exc
    except StreamFailure as exc:
        # The host wraps a failed protocol negotiation; the cause says which it was.
        if isinstance(exc.__cause__, MultiselectClientError):
            raise ProtocolNotSupported(operation, str(exc.__cause__)) from exc
        raise StreamResetError(f"{operation}: {exc}") from exc
    except (IOException, BaseLibp2pError) as exc:
        raise TransportError(f"{operation}: {type(exc).__name__}: {exc}") from exc
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise StreamResetError(f"{operation}: {type(exc).__name__}: {exc}") from exc
