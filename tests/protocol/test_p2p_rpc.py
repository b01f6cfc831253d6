"""Request/response over real libp2p streams on loopback, and the frame codec on fakes."""

from __future__ import annotations

import pytest
import trio

from protocol.errors import MatchError, MessageError
from protocol.ids import PeerId
from protocol.p2p.errors import (
    FrameError,
    OversizedMessage,
    ProtocolNotSupported,
    RemoteError,
    RequestTimeout,
    StreamResetError,
)
from protocol.p2p.framing import encode_frame, encode_varint, read_frame
from protocol.p2p.host import Node
from protocol.p2p.rpc_client import KeptStream, request
from protocol.p2p.rpc_server import PeerQuota, RequestHandlers
from protocol.p2p.rpc_wire import Limits, Status
from protocol.p2p.testing import start_hosts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ECHO = "/gpumarket-test/echo/1.0.0"


class FakeStream:
    """An in-memory stream that hands out its bytes in small pieces."""

    def __init__(self, data: bytes, piece: int = 3) -> None:
        self.data = data
        self.piece = piece
        self.read_calls = 0

    async def read(self, n: int | None = None) -> bytes:
        self.read_calls += 1
        size = min(self.piece, n if n is not None else self.piece)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    async def write(self, data: bytes) -> None:
        raise AssertionError("not written in these tests")

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        pass


async def handler(request_bytes: bytes, peer: PeerId) -> bytes:
    if request_bytes == b"malformed":
        raise MessageError("malformed request")
    if request_bytes == b"decline":
        raise MatchError("no capacity")
    if request_bytes == b"crash":
        raise RuntimeError("bug")
    if request_bytes == b"hang":
        await trio.sleep_forever()
    return peer.encode() + b":" + request_bytes[::-1]


def test_varint_encoding() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"


async def test_read_frame_reassembles_pieces() -> None:
    payload = bytes(range(200))
    assert await read_frame(FakeStream(encode_frame(payload)), max_size=200, timeout=1) == payload


async def test_oversized_frame_refused_before_its_body_is_read() -> None:
    stream = FakeStream(encode_frame(b"x" * 1000), piece=1)
    with pytest.raises(OversizedMessage) as info:
        await read_frame(stream, max_size=999, timeout=1)
    assert info.value.size == 1000
    assert stream.read_calls == 2  # the two header bytes, nothing of the body
    assert len(stream.data) == 1000


async def test_truncated_and_malformed_frames() -> None:
    with pytest.raises(StreamResetError):
        await read_frame(FakeStream(encode_varint(10) + b"abc"), max_size=100, timeout=1)
    with pytest.raises(FrameError):
        await read_frame(FakeStream(b"\xff" * 6), max_size=100, timeout=1)
    assert await read_frame(FakeStream(b""), max_size=100, timeout=1, eof_ok=True) is None
    with pytest.raises(StreamResetError):
        await read_frame(FakeStream(b""), max_size=100, timeout=1)


async def test_round_trip_and_error_replies() -> None:
    async with start_hosts(2, "chain") as (server, client):
        RequestHandlers(server).register(ECHO, handler, Limits(timeout_s=2))
        reply = await request(client, server.peer_id, ECHO, b"hello")
        assert reply == client.peer_id.encode() + b":olleh"

        for payload, status in [
            (b"malformed", Status.BAD_REQUEST),
            (b"decline", Status.REFUSED),
            (b"crash", Status.INTERNAL),
        ]:
            with pytest.raises(RemoteError) as info:
                await request(client, server.peer_id, ECHO, payload)
            assert info.value.code == status
        assert "bug" not in str(info.value)  # internal details stay on the server


async def test_kept_stream_serves_repeated_requests_and_survives_refusals() -> None:
    async with start_hosts(2, "chain") as (server, client):
        RequestHandlers(server).register(ECHO, handler, Limits(max_request_bytes=64))
        async with KeptStream(client, server.peer_id, ECHO, Limits(timeout_s=2)) as kept:
            for i in range(20):
                assert (await kept.request(b"%d" % i)).endswith(b":" + (b"%d" % i)[::-1])
            first_stream = kept._stream
            with pytest.raises(RemoteError):
                await kept.request(b"malformed")
            assert kept._stream is first_stream  # a refusal does not cost the stream
            with pytest.raises(RemoteError) as info:
                await kept.request(b"y" * 100)
            assert info.value.code == Status.TOO_LARGE
            assert (await kept.request(b"again")).endswith(b":niaga")


async def test_timeout_against_a_handler_that_never_answers() -> None:
    async with start_hosts(2, "chain") as (server, client):
        RequestHandlers(server).register(ECHO, handler, Limits(timeout_s=30))
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            await request(client, server.peer_id, ECHO, b"hang", Limits(timeout_s=0.5))
        assert trio.current_time() - start < 5
        async with KeptStream(client, server.peer_id, ECHO, Limits(timeout_s=0.5)) as kept:
            with pytest.raises(RequestTimeout):
                await kept.request(b"hang")
            assert kept._stream is None  # its state is unknown, so it was dropped
            assert (await kept.request(b"ok")).endswith(b":ko")


async def test_oversized_requests_refused_on_both_sides() -> None:
    async with start_hosts(2, "chain") as (server, client):
        RequestHandlers(server).register(ECHO, handler, Limits(max_request_bytes=1024))
        with pytest.raises(RemoteError) as info:
            await request(client, server.peer_id, ECHO, b"x" * 4096)
        assert info.value.code == Status.TOO_LARGE
        with pytest.raises(OversizedMessage):
            await request(client, server.peer_id, ECHO, b"x" * 4096, Limits(max_request_bytes=100))


async def test_unknown_protocol_and_unregistered_handler() -> None:
    async with start_hosts(2, "chain") as (server, client):
        handlers = RequestHandlers(server)
        handlers.register(ECHO, handler)
        with pytest.raises(ProtocolNotSupported):
            await request(client, server.peer_id, "/gpumarket-test/nothing/1.0.0", b"x")
        handlers.unregister(ECHO)
        with pytest.raises(ProtocolNotSupported):
            await request(client, server.peer_id, ECHO, b"x")


async def test_one_peer_cannot_hold_more_streams_than_its_quota() -> None:
    async with start_hosts(3, "star") as (server, greedy, other):
        handlers = RequestHandlers(server, PeerQuota(max_streams=3))
        handlers.register(ECHO, handler, Limits(timeout_s=2))
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(_hang, greedy, server.peer_id)
            with trio.fail_after(10):
                while handlers.open_streams(greedy.peer_id) < 3:
                    await trio.sleep(0.01)
            with pytest.raises(RemoteError) as info:
                await request(greedy, server.peer_id, ECHO, b"one more")
            assert info.value.code == Status.REFUSED
            assert "too many open streams" in str(info.value)
            # another peer is served while the greedy one holds its whole quota
            assert (await request(other, server.peer_id, ECHO, b"hi")).endswith(b":ih")
        # the handlers' deadline ended the hanging requests and gave the streams back
        with trio.fail_after(10):
            while handlers.open_streams(greedy.peer_id):
                await trio.sleep(0.01)
        assert (await request(greedy, server.peer_id, ECHO, b"ok")).endswith(b":ko")


async def test_new_streams_of_one_peer_are_rate_limited() -> None:
    async with start_hosts(3, "star") as (server, greedy, other):
        handlers = RequestHandlers(server, PeerQuota(streams_per_s=0.01, burst=5))
        handlers.register(ECHO, handler)
        for i in range(5):
            await request(greedy, server.peer_id, ECHO, b"%d" % i)
        with pytest.raises(RemoteError) as info:
            await request(greedy, server.peer_id, ECHO, b"6")
        assert "too many new streams" in str(info.value)
        assert (await request(other, server.peer_id, ECHO, b"x")).endswith(b":x")


async def _hang(client: Node, peer: PeerId) -> None:
    with pytest.raises(RemoteError) as info:
        await request(client, peer, ECHO, b"hang", Limits(timeout_s=30))
    assert info.value.code == Status.TIMEOUT
