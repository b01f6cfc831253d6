"""What only the JSON-RPC bindings do: deployment, logs, nonces under threads, RPC errors."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from eth_account import Account

from contracts import errors as E
from contracts.chain import Web3Chain
from contracts.deploy import connect
from contracts.models import JobStatus
from protocol.ids import JobId
from tests.contracts.harness import CAP, FEE, Market

pytestmark = pytest.mark.integration


@pytest.fixture
def real(deployed: dict[str, str], chain: Any) -> Market:
    from tests.contracts.harness import real_market

    keys = [a.private_key for a in chain.accounts]
    return real_market(chain.rpc_url, chain.chain_id, deployed, keys, chain.rpc)


def test_deploy_layout(real: Market, deployed: dict[str, str]) -> None:
    assert isinstance(real.requester, Web3Chain)
    w3 = real.requester.w3
    assert deployed["registry"] == deployed["market"]
    for name in ("token", "market"):
        assert len(w3.eth.get_code(deployed[name])) > 1000  # type: ignore[arg-type]


def test_events_by_block_range_in_chain_order(real: Market) -> None:
    start = real.requester.block_number() + 1
    job_id = real.create(2)
    real.coordinator.assign(job_id, real.assignment(0, 1))
    end = real.requester.block_number()
    events = real.requester.get_events(start, end)
    names = [(e.contract, e.name) for e in events]
    assert ("token", "Approval") in names and ("token", "Transfer") in names
    assert names.index(("market", "JobCreated")) < names.index(("market", "ProviderAssigned"))
    created = next(e for e in events if e.name == "JobCreated")
    assert created.args["jobId"] == job_id and created.args["escrow"] == 3 * CAP + FEE
    assert [e.args["index"] for e in events if e.name == "ProviderAssigned"] == [0, 1]
    assert [(e.block_number, e.log_index) for e in events] == sorted(
        (e.block_number, e.log_index) for e in events
    )
    assert {e.name for e in real.requester.get_events(end, end)} == {"ProviderAssigned"}


def test_concurrent_senders_share_one_nonce_counter(real: Market) -> None:
    deployer = real.deployer
    assert isinstance(deployer, Web3Chain)
    clients = [deployer.for_account(real.accounts["deployer"]) for _ in range(4)]
    errors: list[BaseException] = []
    target = Account.create().address

    def mint(client: Web3Chain) -> None:
        try:
            for _ in range(3):
                client.mint(target, 1)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=mint, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert deployer.token_balance(target) == 12


def test_nonce_resyncs_after_a_foreign_transaction(real: Market) -> None:
    requester = real.requester
    assert isinstance(requester, Web3Chain)
    requester.approve(real.deployment.market, 1)  # primes the local counter
    # another process spends the next nonce behind our back
    other = Web3Chain(requester.rpc_url, real.deployment, real.accounts["requester"])
    other.sender._state = type(other.sender._state)()  # a private counter, like a 2nd process
    other.approve(real.deployment.market, 2)
    with pytest.raises(E.RpcError):
        requester.approve(real.deployment.market, 3)  # stale nonce: the node refuses it
    requester.approve(real.deployment.market, 4)  # resynced from the node


def test_unknown_job_and_unreachable_node(real: Market) -> None:
    with pytest.raises(E.JobNotFound):
        real.requester.get_job(JobId(b"\x05" * 32))
    assert real.requester.job_status(JobId(b"\x05" * 32)) == (JobStatus.NONE, 0)
    with pytest.raises(E.RpcError):
        connect("http://127.0.0.1:9")


def test_python_commitment_matches_the_contract(real: Market) -> None:
    from contracts.chain import job_commitment

    job_id = real.create(2)
    assert isinstance(real.requester, Web3Chain)
    terms = real.requester.job_terms(job_id)
    _, _, on_chain = real.requester.market.functions.getJob(bytes(job_id)).call()
    assert job_commitment(terms, []) == bytes(on_chain)
    pair = real.assignment(0, 1)
    real.coordinator.assign(job_id, pair)
    _, _, on_chain = real.requester.market.functions.getJob(bytes(job_id)).call()
    assert job_commitment(terms, pair) == bytes(on_chain)
    assert job_commitment(terms, pair[:1]) != bytes(on_chain)


def test_token_errors_are_named(real: Market) -> None:
    requester = real.requester
    assert isinstance(requester, Web3Chain)
    token = requester.token.functions
    spender = real.deployment.market
    now = requester.now()
    stranger = Account.create()
    with pytest.raises(E.InvalidRecipient):
        requester.sender.send(token.transfer("0x" + "00" * 20, 1))
    with pytest.raises(E.InsufficientAllowance):
        real.coordinator.sender.send(  # type: ignore[attr-defined]
            token.transferFrom(requester.address, stranger.address, 1)
        )
    expired = requester.sign_permit(spender, 5, now - 1)
    with pytest.raises(E.PermitExpired):
        requester.sender.send(
            token.permit(requester.address, spender, 5, now - 1, expired.v, expired.r, expired.s)
        )
    wrong = requester.for_account(stranger).sign_permit(spender, 5, now + 600)
    with pytest.raises(E.InvalidPermitSignature):
        requester.sender.send(
            token.permit(requester.address, spender, 5, now + 600, wrong.v, wrong.r, wrong.s)
        )
