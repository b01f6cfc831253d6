"""What only the JSON-RPC bindings do: deployment checks, records read back from logs,
nonces under threads, RPC errors, the contract's own views of the Python hashes."""

from __future__ import annotations

import threading

import pytest
from eth_account import Account

from contracts import errors as E
from contracts.chain import Web3Chain, job_commitment
from contracts.deploy import TokenUnsuitable, connect, deploy_all, deploy_contract
from contracts.models import JobStatus
from contracts.sender import TxSender
from protocol.ids import JobId
from tests.contracts.harness import CAP, FEE, GOOD, Market

pytestmark = pytest.mark.integration


def _deployer(real: Market) -> TxSender:
    assert isinstance(real.requester, Web3Chain)
    return TxSender(real.requester.w3, real.accounts["deployer"], real.deployment.chain_id)


def _deploy_runtime(real: Market, runtime: bytes) -> str:
    """Deploy raw EVM ``runtime`` code (a stand-in token); returns its address."""
    init = bytes([0x60, len(runtime), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3])
    receipt = _deployer(real).send({"data": "0x" + (init + runtime).hex()})
    return str(receipt["contractAddress"])


def _answers_decimals(decimals: int) -> bytes:
    """Runtime code answering decimals() with ``decimals`` and reverting on anything else."""
    return bytes.fromhex(
        "60003560e01c63313ce56714601357600080fd5b60" + f"{decimals:02x}" + "60005260206000f3"
    )


def test_deploy_layout(real: Market, deployed: dict[str, str]) -> None:
    assert isinstance(real.requester, Web3Chain)
    w3 = real.requester.w3
    assert deployed["registry"] == deployed["market"]
    for name in ("token", "market"):
        assert len(w3.eth.get_code(deployed[name])) > 1000  # type: ignore[arg-type]


def test_deploy_with_an_existing_token_checks_it(real: Market) -> None:
    url, key = real.rpc_url, "0x" + bytes(real.accounts["deployer"].key).hex()
    token = real.deployment.token
    again = deploy_all(url, key, token=token)
    assert again["token"] == token and again["market"] != real.deployment.market
    with pytest.raises(TokenUnsuitable, match="has no code"):
        deploy_all(url, key, token=real.requester.address)
    eighteen = _deploy_runtime(real, _answers_decimals(18))
    with pytest.raises(TokenUnsuitable, match="has 18 decimals"):
        deploy_all(url, key, token=eighteen)
    no_permit = _deploy_runtime(real, _answers_decimals(6))
    with pytest.raises(TokenUnsuitable, match="EIP-2612"):
        deploy_all(url, key, token=no_permit)
    with pytest.raises(TokenUnsuitable, match="decimals"):
        deploy_all(url, key, token=real.deployment.market)
    # the constructor checks the decimals itself, too
    with pytest.raises(E.TokenDecimals) as info:
        deploy_contract(_deployer(real), "JobMarket", eighteen, 1, 1, 5, 1, 1, 91 * 24 * 3600)
    assert info.value.fields == {"decimals": 18}


def test_terms_and_seats_are_read_back_from_events(real: Market) -> None:
    job_id = real.create(2)
    seats = real.assign(job_id, 0, 1)
    assert isinstance(real.requester, Web3Chain)
    fresh = real.requester.for_account(real.accounts["deployer"])
    assert fresh.job_terms(job_id) == real.requester.job_terms(job_id)
    assert fresh.get_seats(job_id) == seats
    info = fresh.get_job(job_id)
    assert info.seats == tuple(seats) and info.status == JobStatus.ASSIGNED
    real.assign(job_id, 2)
    assert len(fresh.get_seats(job_id)) == 3  # the cache follows new seats
    real.coordinator.settle(real.settlement(job_id, [GOOD, GOOD, GOOD]))
    assert fresh.get_job(job_id).seats == tuple(real.seats(job_id))


def test_python_hashes_match_the_contract(real: Market) -> None:
    job_id = real.create(2)
    assert isinstance(real.requester, Web3Chain)
    views = real.requester.market.functions
    terms = real.requester.job_terms(job_id)
    assert bytes(views.termsHash(terms.as_tuple()).call()) == terms.terms_hash()
    _, _, on_chain = views.getJob(bytes(job_id)).call()
    assert job_commitment(terms, []) == bytes(on_chain)
    seats = real.assign(job_id, 0, 1)
    _, _, on_chain = views.getJob(bytes(job_id)).call()
    assert job_commitment(terms, seats) == bytes(on_chain)
    tuples = [s.as_tuple() for s in seats]
    assert bytes(views.commitmentOf(terms.as_tuple(), tuples).call()) == bytes(on_chain)
    assert job_commitment(terms, seats[:1]) != bytes(on_chain)
    assert bytes(views.domainSeparator().call()) == _domain_separator(real)


def _domain_separator(real: Market) -> bytes:
    from eth_abi import encode
    from eth_utils import keccak

    typehash = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    d = real.deployment
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [typehash, keccak(text="gpumarket"), keccak(text="2"), d.chain_id, d.market],
        )
    )


def test_events_by_block_range_in_chain_order(real: Market) -> None:
    start = real.requester.block_number() + 1
    job_id = real.create(2)
    real.assign(job_id, 0, 1)
    end = real.requester.block_number()
    events = real.requester.get_events(start, end)
    names = [(e.contract, e.name) for e in events]
    assert ("token", "Approval") in names and ("token", "Transfer") in names
    assert names.index(("market", "JobCreated")) < names.index(("market", "ProviderAssigned"))
    created = next(e for e in events if e.name == "JobCreated")
    assert created.args["jobId"] == job_id and created.args["escrow"] == 4 * CAP + FEE
    assert [e.args["seat"] for e in events if e.name == "ProviderAssigned"] == [0, 1]
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
    unknown = JobId(b"\x05" * 32)
    with pytest.raises(E.JobNotFound):
        real.requester.get_job(unknown)
    with pytest.raises(E.JobNotFound):
        real.requester.get_seats(unknown)
    with pytest.raises(E.JobNotFound):
        real.requester.finalize(unknown)
    assert real.requester.job_status(unknown) == (JobStatus.NONE, 0)
    with pytest.raises(E.RpcError):
        connect("http://127.0.0.1:9")


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
