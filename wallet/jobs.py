"""What a requester does with jobs: submit, follow, fetch results, cancel or reclaim.

Each function takes settings and an unlocked identity and returns plain data; the CLI
only renders it. Money is checked before anything is uploaded or sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from contracts.chain import Web3Chain
from contracts.errors import MajorityExists
from contracts.models import CompareMode, JobRequest, JobStatus
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import Cid, JobId, Wei, from_wei, parse_address, to_wei
from protocol.ipfs import KuboContentStore, result_digest
from protocol.spec import JobSpec
from protocol.spec_io import canonical_spec, check_local_inputs, load_spec
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings

DEFAULT_FEE = "0.10"
ASSIGN_WINDOW_S = 120
COMMIT_MARGIN_S = 120
REVEAL_WINDOW_S = 180
MAX_INPUT_BYTES = 2 * 2**30
"""All path inputs of one job together; larger data belongs in IPFS beforehand (by CID)."""

Progress = Callable[[str, int, int], None]
"""``progress(what, done_bytes, total_bytes)``."""


def tokens(amount: int) -> str:
    """A token amount for people: ``7.6``, not ``7.600000``."""
    return f"{from_wei(amount).normalize():f}"


class InsufficientFunds(GpuMarketError):
    def __init__(self, address: str, needed: int, have: int) -> None:
        self.needed, self.have = needed, have
        super().__init__(
            f"{address} holds {tokens(have)} tokens but the job escrows {tokens(needed)}: "
            f"{tokens(needed - have)} missing"
        )


class InputTooLarge(GpuMarketError):
    def __init__(self, total: int) -> None:
        self.total = total
        super().__init__(
            f"the job's local inputs hold {total} bytes, more than the {MAX_INPUT_BYTES} allowed; "
            "add large data to IPFS first and name it by cid"
        )


class JobFailed(GpuMarketError):
    def __init__(self, job_id: str, reason: str, provider: str | None) -> None:
        self.reason, self.provider = reason, provider
        who = f" (provider {provider})" if provider else ""
        super().__init__(f"job {job_id} failed{who}: {reason}")


@dataclass(frozen=True)
class Submitted:
    job_id: JobId
    spec_cid: Cid
    input_cids: dict[str, Cid]
    escrow: Wei
    tx_hash: str
    gas_used: int


def chain_for(settings: WalletSettings, identity: Identity) -> Web3Chain:
    return Web3Chain(
        settings.need("rpc_url"), settings.deployment(), "0x" + identity.private_key.hex()
    )


def _path_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def _upload(
    api: str, spec: JobSpec, local: dict[str, Path], progress: Progress
) -> tuple[dict[str, Cid], Cid]:
    """Upload path inputs, then the spec with every input as a CID; return the CIDs."""
    cids: dict[str, Cid] = {}
    total = sum(_path_size(p) for p in local.values())
    done = 0
    async with KuboContentStore(api) as store:
        for name, path in local.items():
            progress(f"uploading {name}", done, total)
            if path.is_dir():
                cids[name] = await store.add_directory(path)
            else:
                cids[name] = await store.add_file(path)
            done += _path_size(path)
            progress(f"uploaded {name}", done, total)
        spec_cid = await store.add_bytes(canonical_spec(spec.with_input_cids(cids)))
    return cids, spec_cid


def submit(
    settings: WalletSettings,
    identity: Identity,
    spec_path: Path,
    *,
    fee: str = DEFAULT_FEE,
    progress: Progress = lambda *_: None,
) -> Submitted:
    """Validate, check funds, upload, create the job on chain (one tx), notify."""
    spec = load_spec(spec_path)
    local = check_local_inputs(spec, spec_path.parent)
    chain = chain_for(settings, identity)
    declared = spec.verification.redundancy
    redundancy = 1 if declared == "auto" else declared
    request_fee = to_wei(fee)
    cap = spec.price.max_per_provider
    escrow = Wei((redundancy + 1) * cap + request_fee)
    balance = chain.token_balance(identity.address)
    if balance < escrow:
        raise InsufficientFunds(identity.address, escrow, balance)
    total = sum(_path_size(p) for p in local.values())
    if total > MAX_INPUT_BYTES:
        raise InputTooLarge(total)
    # Refuse before paying anything when the coordinator cannot take the job.
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        coordinator.health()
    input_cids, spec_cid = trio.run(_upload, settings.need("ipfs_api"), spec, local, progress)
    now = chain.now()
    assign_deadline = now + ASSIGN_WINDOW_S
    commit_deadline = assign_deadline + spec.timeout + COMMIT_MARGIN_S
    request = JobRequest(
        spec_digest=result_digest(spec_cid),
        spec_cid=spec_cid,
        coordinator=parse_address(settings.need("coordinator_address")),
        redundancy=redundancy,
        price_cap=cap,
        fee=request_fee,
        assign_deadline=assign_deadline,
        commit_deadline=commit_deadline,
        settle_deadline=commit_deadline + REVEAL_WINDOW_S,
        mode=CompareMode.EXACT if spec.verification.compare == "exact" else CompareMode.TOLERANCE,
    )
    job_id, receipt = chain.create_job(request)
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        coordinator.notify(job_id)
    return Submitted(job_id, spec_cid, input_cids, escrow, receipt.tx_hash, receipt.gas_used)


TERMINAL = {"settled", "failed", "reclaimed", "cancelled", "disputed"}


def follow(
    settings: WalletSettings,
    job_id: JobId,
    on_event: Callable[[dict[str, Any]], None],
    *,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Stream the job's events until it ends; return the final job view."""
    deadline = time.monotonic() + timeout
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        while time.monotonic() < deadline:
            for event in coordinator.events(job_id, timeout=max(1.0, deadline - time.monotonic())):
                on_event(event)
                if event.get("state") in TERMINAL:
                    break
            view = coordinator.job(job_id)
            if view["state"] in TERMINAL:
                if view["state"] == "failed":
                    failure = view.get("failure") or {}
                    raise JobFailed(
                        view["job_id"], failure.get("reason", "unknown"), failure.get("provider")
                    )
                return view
        raise GpuMarketError(f"job did not finish within {timeout:.0f}s")


def fetch_result(settings: WalletSettings, job_id: JobId, dest: Path) -> tuple[Cid, Path]:
    """Download the job's verified result into ``dest`` (checked against the CID)."""
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        view = coordinator.job(job_id)
    cid = view.get("result_cid")
    if not cid or view.get("state") != "settled":
        raise GpuMarketError(
            f"job {view['job_id']} has no verified result yet (state {view['state']})"
        )

    async def get() -> Path:
        async with KuboContentStore(settings.need("ipfs_api")) as store:
            return await store.get(cid, dest)

    return Cid(cid), trio.run(get)


def cancel_or_reclaim(settings: WalletSettings, identity: Identity, job_id: JobId) -> str:
    """Cancel an unassigned job, or reclaim the escrow of one past its settle deadline
    (finalizing it instead when its providers' on-chain reveals agree)."""
    chain = chain_for(settings, identity)
    info = chain.get_job(job_id)
    if info.status == JobStatus.OPEN:
        chain.cancel(job_id)
        return "cancelled"
    if info.status == JobStatus.ASSIGNED:
        now = chain.now()
        if now <= info.terms.settle_deadline:
            raise GpuMarketError(
                f"job is running; its escrow can be reclaimed after the settle deadline, "
                f"in {info.terms.settle_deadline - now + 1}s"
            )
        try:
            chain.reclaim(job_id, chain.get_assignment(job_id))
        except MajorityExists:
            # Providers agreed on chain: nobody may withhold their pay, so the job is
            # finalized instead (providers paid, the rest refunded to the requester).
            chain.finalize(job_id)
            return "finalized"
        return "reclaimed"
    raise GpuMarketError(f"job is {info.status.name.lower()}: nothing to cancel or reclaim")
