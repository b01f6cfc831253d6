"""Live job logs: output handed over by the runtime goes to the coordinator as LogChunks.

``async with open_log_stream(...) as stream`` gives a :class:`LogStream` whose
:meth:`LogStream.feed` is the runtime's output hook. A background task sends what was fed,
at most one chunk per interval, each chunk at most ``MAX_LOG_CHUNK_BYTES`` and cut after a
line end where one falls inside it (the coordinator stores logs by line). Everything past
the per-job cap is dropped. Leaving the block flushes the rest (within a time bound) and
marks the last chunk ``final``. Logs may be lost: a chunk is tried once, and after a few
failed sends the stream stops sending.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from protocol.ids import Address, JobId
from protocol.messages import LogChunk
from protocol.registry import MAX_LOG_CHUNK_BYTES
from provider_node.reporter import Reporter, try_send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogLimits:
    """How much of a job's output is streamed, and how fast."""

    chunk_bytes: int = MAX_LOG_CHUNK_BYTES
    interval_s: float = 0.5
    """Least time between two chunks while the job runs."""
    max_total_bytes: int = 4 << 20
    """Output past this many bytes of one job is not sent."""
    max_failures: int = 3
    flush_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.chunk_bytes <= MAX_LOG_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{MAX_LOG_CHUNK_BYTES}")


class LogStream:
    """One job's output on its way out; see the module docstring."""

    def __init__(
        self, job_id: JobId, provider: Address, reporter: Reporter, limits: LogLimits
    ) -> None:
        self.job_id = job_id
        self.provider = provider
        self.reporter = reporter
        self.limits = limits
        self.fed_bytes = 0
        """Bytes accepted for sending (never more than ``max_total_bytes``)."""
        self.dropped_bytes = 0
        self.sent_chunks = 0
        self._buffer = bytearray()
        self._offset = 0
        self._failures = 0
        self._closing = False
        self._wake = trio.Event()

    def feed(self, data: bytes) -> None:
        """Take output for sending; returns at once (an :data:`OutputSink`)."""
        room = self.limits.max_total_bytes - self.fed_bytes
        kept = data[: max(0, room)]
        self.dropped_bytes += len(data) - len(kept)
        if kept:
            self._buffer += kept
            self.fed_bytes += len(kept)
            self._wake.set()

    def _take(self) -> bytes:
        window = bytes(self._buffer[: self.limits.chunk_bytes])
        if len(self._buffer) > len(window):
            cut = window.rfind(b"\n") + 1
            window = window[:cut] or window
        del self._buffer[: len(window)]
        return window

    async def _send(self, data: bytes, final: bool) -> None:
        if self._failures >= self.limits.max_failures:
            return
        chunk = LogChunk(
            job_id=self.job_id,
            provider=self.provider,
            stream="stdout",
            offset=self._offset,
            data=data,
            final=final,
        )
        self._offset += len(data)
        if await try_send(self.reporter, chunk):
            self.sent_chunks += 1
            return
        self._failures += 1
        if self._failures >= self.limits.max_failures:
            log.warning("job %s: logs no longer sent after failures", self.job_id.hex())

    async def pump(self) -> None:
        """Send chunks until closed and drained; the last one is marked final."""
        while True:
            if not self._buffer and not self._closing:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            piece = self._take()
            final = self._closing and not self._buffer
            await self._send(piece, final)
            if final:
                return
            if not self._closing:
                await trio.sleep(self.limits.interval_s)

    def close(self) -> None:
        """No more output; the pump sends what is left, then the final chunk."""
        self._closing = True
        self._wake.set()


@asynccontextmanager
async def open_log_stream(
    job_id: JobId, provider: Address, reporter: Reporter, limits: LogLimits | None = None
) -> AsyncIterator[LogStream]:
    """A :class:`LogStream` whose sender runs for the duration of the block."""
    stream = LogStream(job_id, provider, reporter, limits or LogLimits())
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.pump, name=f"logs {job_id.hex()[:12]}")
        try:
            yield stream
        except Exception as exc:
            # Re-raised below, outside the nursery, so callers see it bare, not in a group.
            error = exc
            nursery.cancel_scope.cancel()
        else:
            stream.close()
            # A slow or gone coordinator must not hold up the job's commitment.
            nursery.cancel_scope.deadline = trio.current_time() + stream.limits.flush_timeout_s
    if error is not None:
        raise error
    if stream.dropped_bytes:
        log.info("job %s: %d bytes of output not sent", job_id.hex(), stream.dropped_bytes)
