"""What a requester does with jobs: submit, follow, fetch results, cancel or reclaim.

Each function takes settings and an unlocked identity and returns plain data; the CLI
only renders it. Money is checked before anything is uploaded or sent.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from contracts.chain import Web3Chain
from contracts.errors import MajorityExists
from contracts.models import CompareMode, JobRequest, JobStatus, escrow_of
from contracts.network import PhaseWindows
from protocol import lifecycle
from protocol.errors import ContentError, GpuMarketError
from protocol.failure_output import failure_class_of
from protocol.identity import Identity
from protocol.ids import (
    Address,
    Cid,
    JobId,
    Wei,
    format_tokens,
    job_id_hex,
    parse_address,
    to_wei,
)
from protocol.ipfs import (
    CidMismatch,
    ContentTooLarge,
    DestinationExists,
    KuboContentStore,
    normalize_cid,
    result_digest,
)
from protocol.ipfs.peers import MAX_PEERS, parse_peers
from protocol.spec import JobSpec, Price
from protocol.spec_io import canonical_spec, check_local_inputs, load_spec
from protocol.views import Health, JobEvent, JobView, Quote
from wallet import records
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings, check_pin_to
from wallet.windows import DEFAULT_PHASES, job_windows, queue_wait

log = logging.getLogger(__name__)

DEFAULT_FEE = "0.10"
Progress = Callable[[str, int, int], None]
"""``progress(what, done_bytes, total_bytes)``."""


class BalanceTooLow(GpuMarketError):
    """The account's tokens do not cover the job's escrow, found before anything is sent
    (the token's own revert for this is :class:`contracts.errors.InsufficientBalance`)."""

    def __init__(self, address: str, needed: int, have: int) -> None:
        self.needed, self.have = needed, have
        super().__init__(
            f"{address} holds {format_tokens(have)} tokens but the job escrows "
            f"{format_tokens(needed)}: {format_tokens(needed - have)} missing"
        )


class InputTooLarge(GpuMarketError):
    def __init__(self, total: int, limit: int) -> None:
        self.total, self.limit = total, limit
        super().__init__(
            f"the job's local inputs hold {total} bytes, more than the {limit} allowed "
            "(WALLET_MAX_INPUT_BYTES); add large data to IPFS first and name it by cid"
        )


class JobFailed(GpuMarketError):
    """The job ended without a result: it failed, or its coordinator aborted it (then the
    whole escrow is already credited back to the requester)."""

    def __init__(
        self, job_id: str, reason: str, provider: str | None, *, what: str = "failed"
    ) -> None:
        self.reason, self.provider = reason, provider
        who = f" (provider {provider})" if provider else ""
        super().__init__(f"job {job_id} {what}{who}: {reason}")


class PinFailed(GpuMarketError):
    """Content could not be pinned at the requester's pinning node (``WALLET_PIN_TO`` or
    ``--pin-to``); ``then`` says where things stand and how to go on."""

    def __init__(self, api_url: str, what: str, reason: str, then: str) -> None:
        self.api_url, self.what, self.reason = api_url, what, reason
        super().__init__(
            f"pinning {what} at {api_url} failed: {reason}; check the pinning node "
            f"(WALLET_PIN_TO or --pin-to): {then}"
        )


NOTHING_PAID = "nothing was paid; fix it, or submit without --pin-to"
"""Where a submit stands when the pinning node fails: before the job is created."""


@dataclass(frozen=True)
class Submitted:
    job_id: JobId
    spec_cid: Cid
    input_cids: dict[str, Cid]
    escrow: Wei
    tx_hash: str
    gas_used: int
    bytes_uploaded: int = 0
    """The spec and the local inputs this wallet added to IPFS."""
    warnings: tuple[str, ...] = ()
    pinned_at: str | None = None
    """The pinning node that also holds the spec and the local inputs, pinned."""


CREATE_JOB_GAS = 150_000
"""More than ``createJob`` with a permit uses (about 131,000 from a cold account, 97,000
warm, on Anvil cancun): the gas an account must be able to pay before anything is uploaded."""


def chain_for(settings: WalletSettings, identity: Identity) -> Web3Chain:
    return Web3Chain(
        settings.need("rpc_url"),
        settings.deployment(),
        "0x" + identity.private_key.hex(),
        policy=settings.send_policy(),
        journal_dir=settings.chain_journal(),
        network=settings.network,
    )


def _path_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def local_input_bytes(local: dict[str, Path]) -> int:
    """Bytes of a spec's local inputs (``check_local_inputs``): what the upload will hold,
    and at least what a provider will fetch of them."""
    return sum(_path_size(p) for p in local.values())


async def _upload(
    opened: KuboContentStore,
    spec: JobSpec,
    local: dict[str, Path],
    total: int,
    progress: Progress,
    pin_to: str | None = None,
    timeout_s: float = 60.0,
) -> tuple[dict[str, Cid], Cid, int]:
    """Upload path inputs (``total`` bytes: :func:`local_input_bytes`), then the spec with
    every input as a CID; return the CIDs and the bytes uploaded. With ``pin_to``, the same
    inputs and spec are then uploaded to that pinning node too, pinned (each under the CID
    the wallet's node took)."""
    cids: dict[str, Cid] = {}
    done = 0
    async with opened as store:
        for name, path in local.items():
            progress(f"uploading {name}", done, total)
            if path.is_dir():
                cids[name] = await store.add_directory(path)
            else:
                cids[name] = await store.add_file(path)
            done += _path_size(path)
            progress(f"uploaded {name}", done, total)
        spec_bytes = canonical_spec(spec.with_input_cids(cids))
        spec_cid = await store.add_bytes(spec_bytes)
    if pin_to is not None:
        copies: list[tuple[str, Cid, Path | bytes]] = [
            (f"input {name!r}", cids[name], path) for name, path in local.items()
        ]
        copies.append(("the spec", spec_cid, spec_bytes))
        progress(f"pinning at {pin_to}", 0, total)
        await pin_at(pin_to, copies, timeout_s, NOTHING_PAID)
        progress(f"pinned at {pin_to}", total, total)
    return cids, spec_cid, total + len(spec_bytes)


def on_chain_redundancy(spec: JobSpec) -> int:
    """``auto`` is one primary on chain (the coordinator may add a checker)."""
    declared = spec.verification.redundancy
    return 1 if declared == "auto" else declared


def job_escrow(spec: JobSpec, fee: Wei) -> Wei:
    """What creating the job takes from the requester: every seat's cap and the fee."""
    return escrow_of(on_chain_redundancy(spec), spec.price.max_per_provider, fee)


def job_request(
    spec: JobSpec,
    spec_cid: Cid,
    coordinator: Address,
    fee: Wei,
    now: int,
    phases: PhaseWindows = DEFAULT_PHASES,
    *,
    queue_wait_s: int = 0,
) -> JobRequest:
    """The createJob parameters for ``spec`` mined at block time ``now`` (use the next
    block's time, ``Web3Chain.next_block_time``, not the latest block's), with
    ``queue_wait_s`` more to be assigned in (the jobs queued ahead: :func:`backlog_wait`)."""
    redundancy = on_chain_redundancy(spec)
    windows = job_windows(now, spec.timeout, redundancy, phases, queue_wait_s=queue_wait_s)
    return JobRequest(
        spec_digest=result_digest(spec_cid),
        spec_cid=spec_cid,
        coordinator=coordinator,
        redundancy=redundancy,
        price_cap=spec.price.max_per_provider,
        fee=fee,
        timeout_ms=windows.timeout_ms,
        assign_deadline=windows.assign_deadline,
        commit_window=windows.commit_window,
        reveal_window=windows.reveal_window,
        spare_deadline=windows.spare_deadline,
        settle_deadline=windows.settle_deadline,
        mode=CompareMode.EXACT if spec.verification.compare == "exact" else CompareMode.TOLERANCE,
    )


def backlog_wait(spec: JobSpec, quote: Quote, jobs_under_way: int) -> int:
    """Seconds the jobs already under way at the coordinator may hold the job slots this
    spec could use: their seats (counted like this job's) over the providers able to run
    it (``capable`` in the quote, one slot each at least), each seat its timeout at most."""
    seats = on_chain_redundancy(spec)
    slots = max(1, quote.capable)
    return queue_wait(jobs_under_way * seats, slots, spec.timeout)


def no_capable_provider(quote: Quote) -> str | None:
    """A warning when no provider in the coordinator's book could ever run the spec quoted
    in ``quote`` (``POST /quote``), naming why; None when one could."""
    if quote.capable != 0:
        return None
    book = quote.providers_in_book
    reasons = quote.incapable
    why = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    if book == 0:
        why = "the book is empty"
    return (
        f"none of the {book} providers the coordinator knows could run this job as "
        f"specified ({why}); it will wait in matching until one that can joins, or its "
        "assign deadline passes. `gpumarket job quote SPEC` shows each provider's reason"
    )


def submit(
    settings: WalletSettings,
    identity: Identity,
    spec_path: Path,
    *,
    fee: str = DEFAULT_FEE,
    progress: Progress = lambda *_: None,
    price_cap: Wei | None = None,
    warn: Callable[[str], None] = log.warning,
) -> Submitted:
    """Validate, check funds, upload, create the job on chain (one tx), notify.
    ``price_cap`` replaces the spec's ``price.max_per_provider`` (``--cap auto``). A spec
    no provider in the coordinator's book could ever run is submitted all the same (one
    may join), after ``warn`` was told why."""
    spec = load_spec(spec_path)
    if price_cap is not None:
        # Price reads token amounts ("2.5"), not units: validated like the spec's own.
        price = Price.model_validate({"max_per_provider": format_tokens(price_cap)})
        spec = spec.model_copy(update={"price": price})
    local = check_local_inputs(spec, spec_path.parent)
    chain = chain_for(settings, identity)
    request_fee = to_wei(fee)
    escrow = job_escrow(spec, request_fee)
    # Size the windows now: a timeout the market cannot take is refused before any upload.
    phases = settings.phase_windows()
    job_windows(chain.next_block_time(), spec.timeout, on_chain_redundancy(spec), phases)
    balance = chain.token_balance(identity.address)
    if balance < escrow:
        raise BalanceTooLow(identity.address, escrow, balance)
    short_of_gas = chain.sender.gas_shortfall(CREATE_JOB_GAS)
    if short_of_gas is not None:
        raise short_of_gas
    total = local_input_bytes(local)
    if total > settings.max_input_bytes:
        raise InputTooLarge(total, settings.max_input_bytes)
    # Refuse before paying anything when the coordinator cannot take the job.
    warnings: list[str] = []
    wait_s = 0
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        coordinator.health()
        try:
            quote = coordinator.quote(spec_path.read_text(), input_bytes=total)
        except GpuMarketError as exc:  # a quote is advice: its failure stops nothing
            log.debug("no quote before submitting: %s", exc)
            quote = None
        warning = None if quote is None else no_capable_provider(quote)
        if quote is not None:
            try:  # the jobs ahead lengthen the assign window (advice too)
                wait_s = backlog_wait(spec, quote, coordinator.jobs_under_way())
            except GpuMarketError as exc:
                log.debug("no job counts before submitting: %s", exc)
    if warning is not None:
        warnings.append(warning)
        warn(warning)
    pin_to = settings.pin_to
    if pin_to is not None:  # a pinning node that does not answer fails before any upload
        trio.run(pin_at, pin_to, (), settings.ipfs_timeout_s, NOTHING_PAID)
    input_cids, spec_cid, uploaded = trio.run(
        _upload,
        settings.content_store(),
        spec,
        local,
        total,
        progress,
        pin_to,
        settings.ipfs_timeout_s,
    )
    coordinator_address = parse_address(settings.need("coordinator_address"))
    # Deadlines from the next block's time, not the latest's: after the chain sat idle the
    # latest block is old and a window sized from it can be past when createJob is mined.
    request = job_request(
        spec,
        spec_cid,
        coordinator_address,
        request_fee,
        chain.next_block_time(),
        phases,
        queue_wait_s=wait_s,
    )
    job_id, receipt = chain.create_job(request)
    records.update(
        settings,
        job_id,
        requester=identity.address,
        create_tx=receipt.tx_hash,
        spec_cid=spec_cid,
        bytes_uploaded=uploaded,
        submitted_at=time.time(),
        pinned=[spec_cid, *input_cids.values()],
        **({"pin_to": pin_to} if pin_to is not None else {}),
    )
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        coordinator.notify(job_id)
    return Submitted(
        job_id,
        spec_cid,
        input_cids,
        escrow,
        receipt.tx_hash,
        receipt.gas_used,
        uploaded,
        tuple(warnings),
        pin_to,
    )


TERMINAL = frozenset(str(s) for s in lifecycle.TERMINAL)
"""Where waiting for a job ends (``protocol.lifecycle``; ``disputed`` is not one: a
tie-breaker follows)."""
FAILED = str(lifecycle.JobState.FAILED)


def follow(
    settings: WalletSettings,
    job_id: JobId,
    on_event: Callable[[JobEvent], None],
    *,
    timeout: float = 900.0,
) -> JobView:
    """Stream the job's events until it ends; return the final job view. A job that
    failed or was aborted raises JobFailed."""
    deadline = time.monotonic() + timeout
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        while time.monotonic() < deadline:
            for event in coordinator.events(job_id, timeout=max(1.0, deadline - time.monotonic())):
                on_event(event)
                if event.state in TERMINAL:
                    break
            view = coordinator.job(job_id)
            if view.state == FAILED:
                failure = view.failure
                raise JobFailed(
                    view.job_id,
                    "no reason given" if failure is None else failure.reason,
                    None if failure is None else failure.provider,
                    what="was aborted by its coordinator" if view.abort_tx else "failed",
                )
            if view.state in TERMINAL:
                check_not_a_failure(view)
                return view
        raise GpuMarketError(f"job did not finish within {timeout:.0f}s")


def check_not_a_failure(view: JobView) -> None:
    """Raise JobFailed when the verified result is the canonical failure output: the job's own
    code failed the same way on every provider, which were paid for the time it ran."""
    exit_class = failure_class_of(view.result_cid)
    if exit_class is None:
        return
    failure = view.failure
    reason = f"the job {exit_class.describe()} on every provider that ran it"
    if failure is not None and failure.reason:
        reason += f" ({failure.reason})"
    reason += "; the providers were paid for the time it ran (see `gpumarket job status`)"
    raise JobFailed(view.job_id, reason, None if failure is None else failure.provider)


@dataclass(frozen=True)
class FetchedResult:
    cid: Cid
    path: Path
    source: str
    """Where the bytes came from: a peer's gateway URL, or the wallet's own IPFS node (which
    holds them or fetched them from its peers over bitswap)."""
    pinned_at: str | None = None
    """The pinning node (``WALLET_PIN_TO``, ``job result --pin-to``) now holding the result."""


def fetch_result(settings: WalletSettings, job_id: JobId, dest: Path) -> FetchedResult:
    """Download the job's verified result into ``dest`` (checked against the CID)."""
    with CoordinatorClient(settings.need("coordinator_url")) as coordinator:
        view = coordinator.job(job_id)
        health: Health | None
        try:
            health = coordinator.health()
        except GpuMarketError as exc:
            log.info("coordinator health unavailable, its IPFS node not dialled: %s", exc)
            health = None
    cid = view.result_cid
    if not cid or view.state not in ("settled", "finalized"):
        raise GpuMarketError(f"job {view.job_id} has no verified result yet (state {view.state})")
    check_not_a_failure(view)
    settings = with_result_holders(with_recorded_pin_to(settings, job_id), health)
    fetched = trio.run(download_result, settings, Cid(cid), dest)
    records.add_bytes(settings, job_id, "bytes_downloaded", _path_size(fetched.path))
    trio.run(release_uploads, settings, job_id)
    return fetched


def pin_job_result(settings: WalletSettings, job_id: JobId) -> FetchedResult:
    """The job has ended: pin its verified result at the pinning node (``settings.pin_to``,
    else the one its submit recorded), downloading it through a scratch directory that is
    removed afterwards. The returned ``path`` no longer exists."""
    if with_recorded_pin_to(settings, job_id).pin_to is None:
        raise GpuMarketError(
            f"job {job_id_hex(job_id)}: no pinning node to keep its result at "
            "(set WALLET_PIN_TO or pass --pin-to)"
        )
    with tempfile.TemporaryDirectory(prefix="gpumarket-result-") as scratch:
        return fetch_result(settings, job_id, Path(scratch) / "result")


def with_recorded_pin_to(settings: WalletSettings, job_id: JobId) -> WalletSettings:
    """``settings`` with the pinning node the job's submit recorded when none is set now
    (``WALLET_PIN_TO`` or ``--pin-to`` given now wins); a record that names none, or a
    malformed one, changes nothing."""
    if settings.pin_to is not None:
        return settings
    recorded = records.read(settings, job_id).get("pin_to")
    if not isinstance(recorded, str):
        return settings
    try:
        return settings.model_copy(update={"pin_to": check_pin_to(recorded)})
    except ValueError as exc:
        log.warning("job %s: ignoring the recorded pinning node: %s", job_id_hex(job_id), exc)
        return settings


def with_result_holders(settings: WalletSettings, health: Health | None) -> WalletSettings:
    """``settings`` whose IPFS peers also name the coordinator's node (``GET /health``
    ``ipfs_peers``), which keeps settled results after the providers dropped theirs; a
    coordinator that names none, or names them wrongly, adds nothing."""
    if health is None or not health.result_retention_s:
        return settings
    try:
        holders = parse_peers(health.ipfs_peers)
    except ValueError as exc:
        log.warning("ignoring the coordinator's IPFS peers: %s", exc)
        return settings
    if not isinstance(holders, tuple):
        return settings
    peers = tuple(dict.fromkeys((*settings.ipfs_peers, *holders)))[:MAX_PEERS]
    return settings.model_copy(update={"ipfs_peers": peers})


async def release_uploads(settings: WalletSettings, job_id: JobId) -> list[str]:
    """The job has ended: unpin the spec and inputs its submit pinned on the wallet's node,
    except those another unfinished job of this wallet uploaded too. Returns what was
    unpinned; a node that cannot unpin leaves the pins (and the record) for the next try."""
    record = records.read(settings, job_id)
    if "released_at" in record:
        return []
    pinned = [str(c) for c in record.get("pinned", ()) if isinstance(c, str)]
    keep = records.held_elsewhere(settings, job_id)
    released = [cid for cid in pinned if cid not in keep]
    try:
        async with settings.content_store(own_node_only=True) as store:
            for cid in released:
                await store.unpin(cid)
    except ContentError as exc:
        log.warning("job %s: uploads stay pinned, unpin failed: %s", job_id_hex(job_id), exc)
        return []
    records.update(settings, job_id, released_at=time.time())
    return released


async def download_result(settings: WalletSettings, cid: Cid, dest: Path) -> FetchedResult:
    """Fetch ``cid`` through the wallet's IPFS node (and its gateways); a result nobody
    serves fails naming the CID and every node asked."""
    async with settings.content_store() as store:
        try:
            path = await store.get(cid, dest)
        except ContentError as exc:
            if isinstance(exc, CidMismatch | ContentTooLarge | DestinationExists):
                raise
            asked = [f"IPFS node {store.api_url}"]
            if store.peers:
                asked.append("its peers " + ", ".join(store.peers))
            if store.gateways:
                asked.append("gateways " + ", ".join(store.gateways))
            raise GpuMarketError(
                f"result {cid} could not be fetched: nobody served it (asked {'; '.join(asked)}). "
                "The providers and the coordinator keep results for a retention period only; "
                f"{exc}"
            ) from exc
        fetched = FetchedResult(Cid(cid), path, store.last_source or store.api_url)
    if settings.pin_to is None:
        return fetched
    then = (
        f"the result is verified and written to {fetched.path}; run `job result` again "
        "with a new --output to retry"
    )
    copy = ("the result", fetched.cid, fetched.path)
    await pin_at(settings.pin_to, [copy], settings.ipfs_timeout_s, then)
    return replace(fetched, pinned_at=settings.pin_to)


async def pin_at(
    api_url: str,
    copies: Sequence[tuple[str, Cid, Path | bytes]],
    timeout_s: float,
    then: str,
) -> None:
    """Upload each ``(what, cid, content)`` (a file, a directory, or bytes) to the pinning
    node ``api_url`` (its Kubo RPC API), pinned, and check that the CID the upload computes
    is ``cid``. The bytes are sent, not asked for by CID: the pinning node need not reach
    the wallet's node (and gateways stream results past it). The node is asked for its
    version first, so with no copies this only checks that it answers. Raises
    :class:`PinFailed` naming the node, what failed and ``then``."""
    what = ", ".join(f"{label} {cid}" for label, cid, _ in copies) or "the job's uploads"
    try:
        async with KuboContentStore(api_url, timeout=timeout_s) as node:
            await node.version()
            for label, cid, content in copies:
                what = f"{label} {cid}"
                if isinstance(content, bytes):
                    added = await node.add_bytes(content)
                elif content.is_dir():
                    added = await node.add_directory(content)
                else:
                    added = await node.add_file(content)
                if normalize_cid(added) != normalize_cid(cid):
                    raise CidMismatch(normalize_cid(cid), normalize_cid(added))
    except ContentError as exc:
        raise PinFailed(api_url, what, str(exc), then) from exc


def cancel_or_reclaim(settings: WalletSettings, identity: Identity, job_id: JobId) -> str:
    """Cancel a job nobody was seated on, or reclaim the escrow of one past its settle
    deadline (finalizing it instead when its providers' on-chain votes decide it). Returns
    what happened: "cancelled", "reclaimed", "finalized", or "aborted" (the coordinator
    aborted the job and the escrow was credited back then: nothing to do)."""
    chain = chain_for(settings, identity)
    info = chain.get_job(job_id)
    if info.status == JobStatus.OPEN:
        chain.cancel(job_id)
        return "cancelled"
    if info.status == JobStatus.ABORTED:
        return "aborted"
    if info.status == JobStatus.ASSIGNED:
        now = chain.now()
        if now <= info.terms.settle_deadline:
            raise GpuMarketError(
                f"job is running; its escrow can be reclaimed after the settle deadline, "
                f"in {info.terms.settle_deadline - now + 1}s"
            )
        try:
            chain.reclaim(job_id)
        except MajorityExists:
            # The on-chain votes decide the job: nobody may withhold the winners' pay, so
            # it is finalized instead (winners paid, the rest refunded to the requester).
            chain.finalize(job_id)
            return "finalized"
        return "reclaimed"
    raise GpuMarketError(f"job is {info.status.name.lower()}: nothing to cancel or reclaim")
