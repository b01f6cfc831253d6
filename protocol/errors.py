"""One exception tree for the whole project.

Every error a component raises on purpose derives from :class:`GpuMarketError`, grouped
by subsystem. Foreign errors (web3, httpx, libp2p) are translated at the boundary with
``raise ... from exc`` so callers only ever catch these::

    GpuMarketError
    ├── ConfigError            a setting is missing or invalid
    ├── SpecError              a job spec is invalid (names the field path)
    ├── MessageError           a wire message is malformed, unsigned, expired or replayed
    │   └── SignatureError     a signature does not verify or names the wrong signer
    ├── IdentityError          a keystore cannot be read, decrypted or written
    ├── ContentError           IPFS: unreachable daemon, CID mismatch, size cap
    ├── TransportError         libp2p: dial, stream, timeout, oversized message
    ├── ChainError             EVM: RPC failures and the contracts' custom errors
    ├── ProofError             commitments, comparisons and challenges that fail
    ├── MatchError             no provider satisfies a job
    ├── SandboxError           job code cannot be run or is refused
    └── DevnetError            devnet processes that cannot be started or stopped
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class GpuMarketError(Exception):
    """Root of every error raised on purpose by gpumarket."""


class ConfigError(GpuMarketError):
    """A setting is missing or invalid; the message names the variable to set."""


class SpecError(GpuMarketError):
    """A job spec is invalid. ``path`` is the dotted field path, ``reason`` why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        where = path or "<spec>"
        super().__init__(f"{where}: {reason}")


class MessageError(GpuMarketError):
    """A wire message is malformed, expired, replayed or otherwise unacceptable."""


class SignatureError(MessageError):
    """A signature does not verify, or it was made by someone other than claimed."""


class IdentityError(GpuMarketError):
    """A keystore cannot be created, read or decrypted."""


class ContentError(GpuMarketError):
    """The content store failed: daemon unreachable, CID mismatch, size cap exceeded."""


class TransportError(GpuMarketError):
    """A libp2p operation failed: dial, stream, timeout or oversized message."""


class ChainError(GpuMarketError):
    """An EVM call failed; subclasses in ``contracts.errors`` name each contract error."""


class ProofError(GpuMarketError):
    """A commitment, comparison or challenge check could not be carried out."""


class MatchError(GpuMarketError):
    """No set of providers satisfies a job's requirements."""


class SandboxError(GpuMarketError):
    """Job code could not be run, or a runtime was refused."""


class DevnetError(GpuMarketError):
    """A devnet process could not be started, reached or stopped."""


def leaves(error: BaseException) -> list[BaseException]:
    """The errors inside ``error``, exception groups opened at every depth (``error``
    itself when it is not a group)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def exits_on_error(command: Callable[P, T]) -> Callable[P, T]:
    """A command-line command that ends on a :class:`GpuMarketError` by printing
    ``error: <message>`` to stderr and exiting with status 1. The message already says
    what was wrong and what to do; any other exception is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except GpuMarketError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None

    return run
