"""Errors of the content store, all under :class:`protocol.errors.ContentError`::

ContentError
├── ContentUnavailable   the IPFS API could not be reached or timed out (names the URL)
├── DaemonError          the API answered with an error status or an unreadable reply
├── ContentNotFound      the node does not hold the content
├── InvalidCid           text that is not a CID, or a CID outside this project's profile
├── CidMismatch          downloaded bytes do not hash to the CID that was asked for
├── ContentTooLarge      content exceeds the size cap given by the caller
├── LayoutError          local files that the fixed layout cannot represent
└── MalformedBlock       a block that is not dag-pb / UnixFS as this project writes it
"""

from __future__ import annotations

from protocol.errors import ContentError


class ContentUnavailable(ContentError):
    """The IPFS API at ``api_url`` could not be reached, or did not answer in time."""

    def __init__(self, api_url: str, reason: str) -> None:
        self.api_url = api_url
        self.reason = reason
        super().__init__(f"IPFS API {api_url} unavailable: {reason}")


class DaemonError(ContentError):
    """The API answered ``endpoint`` with an error status or a reply we cannot read."""

    def __init__(self, endpoint: str, status: int | None, message: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.message = message
        code = f"HTTP {status}" if status is not None else "bad reply"
        super().__init__(f"IPFS {endpoint} failed ({code}): {message}")


class ContentNotFound(ContentError):
    """The node does not hold ``cid`` (and, offline, will not fetch it)."""

    def __init__(self, cid: str) -> None:
        self.cid = cid
        super().__init__(f"content not found: {cid}")


class InvalidCid(ContentError):
    """``text`` is not a CID, or not one this project can verify."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid CID {text!r}: {reason}")


class CidMismatch(ContentError):
    """Content fetched for ``expected`` hashes to ``actual`` instead."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"content for {expected} hashes to {actual}: refused")


class ContentTooLarge(ContentError):
    """Content for ``cid`` exceeds the caller's cap of ``limit`` bytes."""

    def __init__(self, cid: str, limit: int) -> None:
        self.cid = cid
        self.limit = limit
        super().__init__(f"content {cid} exceeds the size cap of {limit} bytes")


class TooManyEntries(ContentError):
    """A download holds more files and directories than its limit (a small DAG can name
    the same subtree many times, so the byte cap alone does not bound it)."""

    def __init__(self, cid: str, limit: int) -> None:
        self.cid = cid
        self.limit = limit
        super().__init__(
            f"content {cid} holds more than {limit} files and directories, the limit of "
            "this download: refused (pack a large tree into fewer files, e.g. an archive)"
        )


class LayoutError(ContentError):
    """``path`` cannot be stored in the fixed layout (``reason`` says why)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MalformedBlock(ContentError):
    """A block is not valid dag-pb / UnixFS in the form this project produces."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed block: {reason}")


class DestinationExists(ContentError):
    """A download target already exists; downloads never overwrite."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"download destination already exists: {path}")
