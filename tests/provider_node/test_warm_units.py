"""Warm sandbox bookkeeping without sandboxes: which jobs may start warm, which GPUs a job
gets, what the daemon builds from its settings, and challenges holding their device."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from proofs.challenge import ExactChallenge, ExactWork, device_row_digests
from protocol.errors import MessageError, SandboxError
from protocol.identity import Identity
from protocol.messages import Challenge, ChallengeResponse
from protocol.p2p.testing import dev_private_key
from protocol.signing import decode_signed, encode_signed, sign_message
from provider_node.challenges import ChallengeServer, device_hold
from provider_node.daemon import warm_pool
from provider_node.gpus import GpuPool
from provider_node.runtimes import BwrapRuntime, CommandEntrypoint, ProcessRuntime
from provider_node.runtimes.warmpool import PoolConfig, WarmPool, warm_eligible
from provider_node.settings import ProviderSettings, load_settings
from tests.provider_node.conftest import MakeJob

PROVIDER = Identity.from_private_key(dev_private_key(1, "warm-units"))
COORDINATOR = Identity.from_private_key(dev_private_key(2, "warm-units"))


def _settings(tmp_path: Path, **extra: object) -> ProviderSettings:
    address = "0x" + "11" * 20
    return load_settings(
        rpc_url="http://x",
        market_address=address,
        registry_address=address,
        token_address=address,
        keystore=tmp_path / "k.json",
        ipfs_api="http://y",
        work_dir=tmp_path,
        **extra,
    )


def test_gpu_pool_hands_out_a_warm_set_first() -> None:
    gpus = GpuPool((0, 1, 2, 3))
    warm: list[tuple[int, ...]] = [(2,)]
    gpus.prefer = lambda: warm
    assert gpus.acquire(1) == (2,)  # warm, though 0 is lower
    assert gpus.acquire(1) == (0,)  # (2,) is taken now: lowest free
    gpus.release((2,))
    warm.clear()
    assert gpus.acquire(1) == (1,)
    assert gpus.free_devices == (2, 3)


def test_gpu_pool_preference_needs_a_free_set_of_the_right_size() -> None:
    gpus = GpuPool((0, 1, 2))
    gpus.prefer = lambda: [(1, 2)]
    assert gpus.acquire(1) == (0,)  # a two-GPU set does not fit a one-GPU job
    assert gpus.acquire(2) == (1, 2)
    gpus.release((0, 1, 2))
    gpus.prefer = lambda: [(0, 1)]
    assert gpus.acquire(1) == (0,)
    assert gpus.acquire(2) == (1, 2)  # (0, 1) is no longer free
    assert gpus.acquire(0) == ()
    assert gpus.free == 0


def test_which_jobs_start_warm(make_job: MakeJob) -> None:
    assert warm_eligible(make_job("", torch=True))
    assert warm_eligible(make_job("", torch=True, env={"JOB_FLAG": "on"}))
    command = make_job("")
    assert isinstance(command.entrypoint, CommandEntrypoint) and not warm_eligible(command)
    # Read when an interpreter or library starts: a warm one has read them already.
    for name in ("OMP_NUM_THREADS", "PYTHONOPTIMIZE", "TORCH_HOME", "LD_PRELOAD", "USER"):
        assert not warm_eligible(make_job("", torch=True, env={name: "1"})), name


def test_pool_size_zero_means_no_pool(tmp_path: Path) -> None:
    gpus = GpuPool(())
    assert warm_pool(_settings(tmp_path, warm_sandboxes=0), BwrapRuntime(), gpus) is None
    unsafe = ProcessRuntime(unsafe=True)
    assert warm_pool(_settings(tmp_path), unsafe, gpus) is None  # bwrap only
    pool = warm_pool(_settings(tmp_path, warm_sandboxes=3), BwrapRuntime(), gpus)
    assert isinstance(pool, WarmPool)
    assert pool.config.size == 3 and pool.devices == ()
    assert pool.directory == tmp_path / "warm"


def test_pool_holds_within_the_job_bounds(tmp_path: Path) -> None:
    gpus = GpuPool((0, 1))
    settings = _settings(
        tmp_path,
        warm_sandbox_gpus=4,
        warm_sandbox_memory_bytes=4 << 30,
        max_job_memory_bytes=1 << 30,
        max_job_pids=100,
    )
    pool = warm_pool(settings, BwrapRuntime(), gpus)
    assert pool is not None
    assert pool.config.gpus_per_slot == 2  # no more than the host has
    assert pool.config.hold.memory_bytes == 1 << 30
    assert pool.config.hold.max_pids == 100
    gpus.acquire(1)
    assert tuple(pool.free_gpus()) == (1,)
    assert _settings(tmp_path).warm_sandboxes == 1  # on by default, small


async def test_a_challenge_holds_free_gpus_and_pauses_their_warm_slots() -> None:
    gpus = GpuPool((0, 1, 2))
    paused: list[tuple[int, ...]] = []

    @asynccontextmanager
    async def pause(held: Sequence[int]) -> AsyncIterator[None]:
        paused.append(tuple(held))
        yield

    hold = device_hold(gpus, pause=pause)
    async with hold(2) as devices:
        assert devices == ("cuda:0", "cuda:1")
        assert gpus.free_devices == (2,)  # no job starts on a GPU being challenged
    assert paused == [(0, 1)] and gpus.free == 3
    job = gpus.acquire(2)  # jobs took two GPUs since the advert
    with pytest.raises(MessageError, match="busy: the challenge asks for 2 GPUs and 1 are free"):
        async with hold(2):
            pass
    assert job is not None and gpus.free == 1  # nothing taken by the refused challenge


async def test_a_host_without_gpus_answers_on_its_one_device() -> None:
    hold = device_hold(GpuPool(()), cpu_device="mps")
    async with hold(1) as devices:
        assert devices == ("mps",)
    with pytest.raises(MessageError, match="asks for 2 devices; this host has one"):
        async with hold(2):
            pass


async def test_a_challenge_runs_inside_the_device_hold() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def hold(count: int) -> AsyncIterator[Sequence[str]]:
        events.append(f"held {count}")
        try:
            yield ("cpu",) * count
        finally:
            events.append("released")

    def respond(ch: ExactChallenge, devices: Sequence[str]) -> ExactWork:
        events.append(f"computing on {len(devices)}")
        return device_row_digests(ch, devices)

    server = ChallengeServer(PROVIDER, respond=respond, hold=hold)
    challenge = Challenge(
        challenge_id=b"\x03" * 16,
        coordinator=COORDINATOR.address,
        provider=PROVIDER.address,
        seed=b"\x05" * 32,
        dtype="fp32",
        m=16,
        k=16,
        reps=2,
        devices=2,
        deadline=int(time.time()) + 60,
    )
    data = encode_signed(sign_message(challenge, COORDINATOR))
    reply = decode_signed(await server.handle(data, COORDINATOR.peer_id)).body
    assert isinstance(reply, ChallengeResponse)
    assert events == ["held 2", "computing on 2", "released"]


def test_pool_config_is_checked() -> None:
    with pytest.raises(SandboxError):
        PoolConfig(size=-1)
    with pytest.raises(SandboxError):
        PoolConfig(gpus_per_slot=-1)
