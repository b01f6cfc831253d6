"""Live log streaming on a fake reporter: bounded chunks, rate limit, cap, final marker."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from protocol.errors import TransportError
from protocol.ids import Address, JobId
from protocol.messages import LogChunk, Message
from protocol.registry import MAX_LOG_CHUNK_BYTES
from provider_node.logstream import LogLimits, open_log_stream

pytestmark = pytest.mark.timeout(30)

JOB = JobId(b"\x07" * 32)
PROVIDER = Address("0x" + "11" * 20)


@dataclass
class Recorder:
    """Records chunks with the (virtual) time they were sent; can fail on demand."""

    chunks: list[tuple[float, LogChunk]] = field(default_factory=list)
    fail: bool = False
    attempts: int = 0

    async def send(self, body: Message) -> None:
        self.attempts += 1
        if self.fail:
            raise TransportError("coordinator unreachable")
        assert isinstance(body, LogChunk)
        self.chunks.append((trio.current_time(), body))

    def data(self) -> bytes:
        return b"".join(c.data for _, c in self.chunks)


def check_stream(chunks: list[LogChunk]) -> None:
    offset = 0
    for chunk in chunks:
        assert chunk.offset == offset and chunk.job_id == JOB and chunk.provider == PROVIDER
        assert len(chunk.data) <= MAX_LOG_CHUNK_BYTES
        offset += len(chunk.data)
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]


async def test_big_output_is_cut_into_bounded_chunks_at_line_ends() -> None:
    reporter = Recorder()
    lines = b"".join(b"%06d %s\n" % (i, b"y" * 90) for i in range(3000))  # ~290 KB
    async with open_log_stream(JOB, PROVIDER, reporter, LogLimits(interval_s=0.01)) as stream:
        stream.feed(lines)
    chunks = [c for _, c in reporter.chunks]
    check_stream(chunks)
    assert reporter.data() == lines
    assert len(chunks) >= len(lines) // MAX_LOG_CHUNK_BYTES + 1
    assert all(c.data.endswith(b"\n") for c in chunks)


async def test_sends_are_spaced_by_the_interval_while_the_job_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reporter = Recorder()
    limits = LogLimits(interval_s=0.5)
    start = trio.current_time()
    async with open_log_stream(JOB, PROVIDER, reporter, limits) as stream:
        for i in range(200):  # a line every 10 ms for 2 s
            stream.feed(b"line %d\n" % i)
            await trio.sleep(0.01)
        running = len(reporter.chunks)
    times = [t for t, _ in reporter.chunks[:running]]
    assert running > 1
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(times))
    assert times[-1] - start <= 2.0
    check_stream([c for _, c in reporter.chunks])
    assert reporter.data() == b"".join(b"line %d\n" % i for i in range(200))


async def test_output_past_the_cap_is_dropped() -> None:
    reporter = Recorder()
    limits = LogLimits(interval_s=0.01, max_total_bytes=1000)
    async with open_log_stream(JOB, PROVIDER, reporter, limits) as stream:
        stream.feed(b"a" * 600)
        stream.feed(b"b" * 600)
        stream.feed(b"c" * 10)
    assert reporter.data() == b"a" * 600 + b"b" * 400
    assert stream.fed_bytes == 1000 and stream.dropped_bytes == 210
    check_stream([c for _, c in reporter.chunks])


async def test_no_output_still_sends_an_empty_final_chunk() -> None:
    reporter = Recorder()
    async with open_log_stream(JOB, PROVIDER, reporter):
        pass
    assert [(c.data, c.final) for _, c in reporter.chunks] == [(b"", True)]


async def test_stops_sending_after_repeated_failures() -> None:
    reporter = Recorder(fail=True)
    limits = LogLimits(interval_s=0.01, chunk_bytes=10, max_failures=3)
    async with open_log_stream(JOB, PROVIDER, reporter, limits) as stream:
        stream.feed(b"z" * 200)
    assert reporter.attempts == 3 and reporter.chunks == []


async def test_an_error_in_the_block_stops_the_sender() -> None:
    reporter = Recorder()
    with pytest.raises(ValueError, match="run failed"):
        async with open_log_stream(JOB, PROVIDER, reporter, LogLimits(interval_s=60)) as stream:
            stream.feed(b"first\n")
            await trio.sleep(0.05)
            stream.feed(b"second\n")
            raise ValueError("run failed")
    assert reporter.data() == b"first\n"
    assert not any(c.final for _, c in reporter.chunks)
