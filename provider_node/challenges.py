"""The provider's side of ``CHALLENGE_PROTOCOL``: timed matmul challenges and row openings.

A :class:`Challenge` message is mapped onto :class:`proofs.challenge.MatmulChallenge` by
:mod:`proofs.challenge_wire` (the mapping the coordinator uses too), computed with torch on
the advertised device, and answered with the Merkle root and the elapsed time. The work is
kept (bounded, briefly) for the :class:`ChallengeOpen` that follows.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, cast

import numpy as np
import trio

from proofs import challenge as proof
from proofs.challenge_wire import challenge_from_wire, rep_row, to_opened_row
from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.errors import GpuMarketError, MessageError
from protocol.identity import Identity, address_from_peer_id
from protocol.ids import PeerId
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    ErrorCode,
    ErrorReply,
    Message,
)
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message

log = logging.getLogger(__name__)

KEPT_CHALLENGES = 4
KEEP_S = 300.0
DEFAULT_MAX_FLOPS = 2e12
"""Work bound of one challenge on this provider (a CPU manages this in tens of seconds)."""


def torch_products(device: str, dtype: str) -> proof.ProductsFn:
    """A products backend that keeps A and B on ``device`` and gathers B's rows there."""
    import torch

    torch_dtype = getattr(torch, dtype)

    def products(a: np.ndarray, b: np.ndarray, perms: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        ta = torch.from_numpy(a).to(device=device, dtype=torch_dtype)
        tb = torch.from_numpy(b).to(device=device, dtype=torch_dtype)
        for perm in perms:
            index = torch.from_numpy(np.asarray(perm, dtype=np.int64)).to(device)
            product = ta @ tb.index_select(0, index)
            yield product.float().cpu().numpy()

    return products


class ChallengeServer:
    """Answers challenges from coordinators, one at a time."""

    def __init__(
        self,
        identity: Identity,
        *,
        device: str = "cpu",
        max_flops: float = DEFAULT_MAX_FLOPS,
        products: Callable[[str], proof.ProductsFn] | None = None,
        verifier: Verifier | None = None,
        clock: Clock = SYSTEM_CLOCK,
        exclusive: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.identity = identity
        self.device = device
        self.exclusive = exclusive or nullcontext
        """Entered around each timed challenge: gives the device to the challenge alone
        (the warm sandbox pool kills its slots on it and stops warming meanwhile)."""
        self.max_flops = max_flops
        self._products = products or (lambda dtype: torch_products(self.device, dtype))
        self.verifier = verifier or Verifier(clock)
        self.clock = clock
        self._lock = trio.Lock()
        self._kept: OrderedDict[bytes, tuple[float, proof.ChallengeWork, str]] = OrderedDict()

    async def handle(self, request: bytes, peer: PeerId) -> bytes:
        """The ``CHALLENGE_PROTOCOL`` handler."""
        of: str | None = None
        try:
            signed = decode_signed(request)
            of = signed.body.message_type
            # The challenger must be the peer on the stream, so nobody relays challenges.
            signer = address_from_peer_id(peer)
            body = signed.body
            if isinstance(body, Challenge):
                self.verifier.open(signed, Challenge, signer=signer)
                reply: Any = await self._on_challenge(body)
            elif isinstance(body, ChallengeOpen):
                self.verifier.open(signed, ChallengeOpen, signer=signer)
                reply = self._on_open(body)
            else:
                raise MessageError(f"{of} is not a challenge request")
        except GpuMarketError as exc:
            log.info("refused %s from %s: %s", of or "a challenge request", peer, exc)
            code = ErrorCode.BUSY if "busy" in str(exc) else ErrorCode.MALFORMED
            reply = ErrorReply(
                sender=self.identity.address, code=code, message=str(exc)[:1000], of=of
            )
        return encode_signed(sign_message(cast(Message, reply), self.identity))

    async def _on_challenge(self, msg: Challenge) -> ChallengeResponse:
        if msg.provider != self.identity.address:
            raise MessageError(f"challenge is for {msg.provider}")
        if msg.deadline < self.clock.now():
            raise MessageError("challenge deadline has passed")
        ch = challenge_from_wire(msg)
        if ch.flops > self.max_flops:
            raise MessageError(f"challenge of {ch.flops:.3g} flops exceeds {self.max_flops:.3g}")
        if self._lock.locked():
            raise MessageError("busy with another challenge")
        async with self._lock, self.exclusive():
            backend = self._products(ch.dtype)
            work = await trio.to_thread.run_sync(
                lambda: proof.respond(ch, products=backend, clock=time.perf_counter)
            )
        self._keep(msg.challenge_id, work, msg.coordinator)
        return ChallengeResponse(
            challenge_id=msg.challenge_id,
            provider=self.identity.address,
            merkle_root=work.root,
            elapsed_s=max(work.elapsed_s, 1e-9),
        )

    def _keep(self, challenge_id: bytes, work: proof.ChallengeWork, coordinator: str) -> None:
        now = time.monotonic()
        self._kept[challenge_id] = (now, work, coordinator)
        while len(self._kept) > KEPT_CHALLENGES:
            self._kept.popitem(last=False)
        for key in [k for k, (at, _, _) in self._kept.items() if now - at > KEEP_S]:
            del self._kept[key]

    def _on_open(self, msg: ChallengeOpen) -> ChallengeRows:
        kept = self._kept.get(msg.challenge_id)
        if kept is None or kept[2] != msg.coordinator:
            raise MessageError("no such challenge here (expired or never answered)")
        ch = kept[1].challenge
        openings = kept[1].open([rep_row(ch, index) for index in msg.rows])
        rows = tuple(to_opened_row(ch, o) for o in openings)
        return ChallengeRows(
            challenge_id=msg.challenge_id, provider=self.identity.address, rows=rows
        )
