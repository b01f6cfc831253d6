"""Network profiles: the TOML file, the devnet's own profile, how every side's settings take
them, and a node that serves another chain refused on a real Anvil."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr
from typer.testing import CliRunner

from contracts.chain import Web3Chain
from contracts.deploy import WrongChainId, connect
from contracts.errors import FeeAboveCap
from contracts.fees import GWEI
from contracts.models import Deployment
from contracts.network import (
    DEVNET_STATE_ENV,
    NETWORK_ENV,
    NETWORKS_FILE_ENV,
    apply_profile,
    devnet_profile,
    load_profiles,
    resolve_profile,
)
from contracts.sender import TxSender
from devnet.anvil import AnvilNode
from protocol.devnet_state import DevAccount, DevnetState, save_state
from protocol.errors import ConfigError

MARKET = "0x" + "11" * 20
TOKEN = "0x" + "22" * 20


def write_profiles(
    path: Path, rpc_url: str = "http://127.0.0.1:8545", chain_id: int = 84532
) -> Path:
    path.write_text(
        f"""
[testnet]
rpc_url = "{rpc_url}"
chain_id = {chain_id}
market = "{MARKET}"
token = "{TOKEN}"
start_block = 1234
confirmations = 3
reorg_margin = 12
block_time_s = 2
max_fee_gwei = 0.5
max_priority_fee_gwei = 0.01
priority_fee_floor_gwei = 0.001
ipfs_api = "http://127.0.0.1:5001"

[testnet.phases]
assign_window_s = 400
reveal_window_s = 600

[cheap]
rpc_url = "{rpc_url}"
chain_id = {chain_id}
market = "{MARKET}"
token = "{TOKEN}"
max_fee_gwei = 0.000000001
"""
    )
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No network selected from outside; whatever a test (or ``gpumarket --network``, which
    sets the variables in this process) sets is undone after it."""
    names = [NETWORK_ENV, NETWORKS_FILE_ENV, DEVNET_STATE_ENV]
    for prefix in ("COORDINATOR_", "PROVIDER_", "WALLET_"):
        for field in ("NETWORK", "NETWORKS_FILE", "RPC_URL", "REORG_MARGIN", "MARKET_ADDRESS"):
            names.append(prefix + field)
    for name in names:
        monkeypatch.setenv(name, "")  # remembers the value before, absent or not
        monkeypatch.delenv(name)
    return monkeypatch


def test_profiles_load_with_their_send_policy(tmp_path: Path) -> None:
    profiles = load_profiles(write_profiles(tmp_path / "networks.toml"))
    p = profiles["testnet"]
    assert (p.chain_id, p.start_block, p.confirmations, p.reorg_margin) == (84532, 1234, 3, 12)
    assert p.deployment().registry == p.deployment().market  # the market is the registry
    policy = p.send_policy()
    assert policy.fees.max_fee_cap == GWEI // 2
    assert policy.fees.priority_fee_cap == GWEI // 100
    assert policy.fees.priority_fee_floor == GWEI // 1000
    assert policy.confirmations == 3
    assert policy.replace_after_s == 10.0  # five blocks of 2 s
    assert "max_fee_gwei of network 'testnet'" in policy.fees.cap_setting


def test_bad_profiles_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[x]\nrpc_url = "u"\nchain_id = 1\nmarket = "0x12"\ntoken = "t"\ncolour = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_profiles(bad)
    message = str(caught.value)
    assert "network 'x' is invalid" in message
    assert "market" in message and "token" in message and "colour" in message
    with pytest.raises(ConfigError, match="no network profiles file at"):
        load_profiles(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"no network 'mainnet' .*cheap, testnet"):
        resolve_profile("mainnet", write_profiles(tmp_path / "n.toml"))
    (tmp_path / "junk.toml").write_text("[x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profiles(tmp_path / "junk.toml")


def test_the_devnet_profile_comes_from_its_state_file(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    state = DevnetState(
        rpc_url="http://127.0.0.1:9999",
        chain_id=31337,
        ipfs_api="http://127.0.0.1:5001",
        coordinator_url="http://127.0.0.1:8000",
        accounts=[DevAccount(address="0x" + "33" * 20, private_key="0x01", role="coordinator")],
        contracts={"token": TOKEN, "registry": MARKET, "market": MARKET},
    )
    path = tmp_path / "state.json"
    save_state(path, state)
    clean_env.setenv(DEVNET_STATE_ENV, str(path))
    p = resolve_profile("devnet")
    assert p == devnet_profile(path)
    assert (p.rpc_url, p.chain_id, p.market, p.token) == (state.rpc_url, 31337, MARKET, TOKEN)
    assert (p.confirmations, p.reorg_margin) == (0, 0)
    assert p.coordinator_address == "0x" + "33" * 20
    # the devnet keeps the sender's defaults, as before profiles existed
    from contracts.sender import SendPolicy

    assert p.send_policy().replace_after_s == SendPolicy().replace_after_s
    assert p.send_policy().receipt_timeout_s == SendPolicy().receipt_timeout_s
    assert p.send_policy().confirmations == 0


def test_every_side_takes_the_profile_under_its_own_variables(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from coordinator.settings import load_settings as coordinator_settings
    from provider_node.settings import load_settings as provider_settings
    from wallet.settings import WalletSettings

    networks = write_profiles(tmp_path / "networks.toml")
    clean_env.setenv(NETWORKS_FILE_ENV, str(networks))
    clean_env.setenv(NETWORK_ENV, "testnet")
    clean_env.setenv("COORDINATOR_REORG_MARGIN", "40")  # a variable beats the profile
    c = coordinator_settings(data_dir=tmp_path / "c", rpc_url="http://127.0.0.1:1")
    assert c.rpc_url == "http://127.0.0.1:1"  # a flag beats the profile
    assert (c.chain_id, c.market_address, c.token_address) == (84532, MARKET, TOKEN)
    assert (c.start_block, c.reorg_margin, c.ipfs_api) == (1234, 40, "http://127.0.0.1:5001")
    assert c.send_policy().confirmations == 3
    assert c.journal_dir == tmp_path / "c" / "txs"

    p = provider_settings(
        keystore=tmp_path / "k.json",
        work_dir=tmp_path / "p",
        ipfs_api="http://127.0.0.1:5002",
        network="cheap",
    )
    assert p.network == "cheap" and p.chain_id == 84532 and p.market_address == MARKET
    assert p.send_policy().fees.max_fee_cap == 1

    w = WalletSettings().with_devnet()
    assert (w.rpc_url, w.chain_id, w.market_address) == ("http://127.0.0.1:8545", 84532, MARKET)
    assert w.deployment().token == TOKEN
    assert w.chain_journal() is not None

    filled, profile = apply_profile("WALLET_", {}, {"rpc_url": "rpc_url"})
    assert profile is not None and filled == {"network": "testnet", "rpc_url": profile.rpc_url}
    clean_env.delenv(NETWORK_ENV)
    assert apply_profile("WALLET_", {}, {"rpc_url": "rpc_url"}) == ({}, None)


def test_a_node_on_another_chain_is_refused(chain: AnvilNode, tmp_path: Path) -> None:
    profile = load_profiles(write_profiles(tmp_path / "n.toml", chain.rpc_url, chain_id=1))[
        "testnet"
    ]
    with pytest.raises(WrongChainId) as caught:
        profile.connect()
    message = str(caught.value)
    assert "serves chain id 31337" in message and "network 'testnet' expects chain id 1" in message
    wrong = Deployment(chain_id=1, token=TOKEN, registry=MARKET, market=MARKET)  # type: ignore[arg-type]
    with pytest.raises(WrongChainId):
        Web3Chain(chain.rpc_url, wrong, chain.accounts[0].private_key)
    assert connect(chain.rpc_url, 31337).eth.chain_id == 31337


def test_a_profile_cap_below_the_chain_fee_sends_nothing(chain: AnvilNode, tmp_path: Path) -> None:
    profile = load_profiles(write_profiles(tmp_path / "n.toml", chain.rpc_url, 31337))["cheap"]
    me = Account.from_key(chain.accounts[5].private_key)
    w3 = profile.connect()
    before = w3.eth.get_transaction_count(me.address, "pending")
    tx = TxSender(w3, me, 31337, policy=profile.send_policy())
    with pytest.raises(FeeAboveCap, match="max_fee_gwei of network 'cheap'"):
        tx.send({"to": me.address, "value": 1, "gas": 21_000})
    assert w3.eth.get_transaction_count(me.address, "pending") == before


def test_the_cli_network_option_reaches_the_wallet(
    chain: AnvilNode, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from gpumarket_cli import app
    from wallet.keys import new_key

    networks = write_profiles(tmp_path / "n.toml", chain.rpc_url, chain_id=5)
    keystores = tmp_path / "keys"
    new_key(keystores, "alice", SecretStr("pw"), scrypt_n=2)
    env = {"WALLET_KEYSTORE_DIR": str(keystores), "WALLET_FOUNDRY_KEYSTORE_DIR": ""}
    args = ["--networks", str(networks), "--network", "testnet", "wallet", "balance"]
    done = CliRunner().invoke(app, [*args, "--account", "alice"], env=env)
    assert done.exit_code == 1, done.output
    flat = " ".join(done.output.split())
    assert "serves chain id 31337 but the settings expect chain id 5" in flat
    unknown = ["--networks", str(networks), "--network", "mainnet", "wallet", "balance"]
    done = CliRunner().invoke(app, [*unknown, "--account", "alice"], env=env)
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit)
    flat = " ".join(done.output.split())
    assert "error: no network 'mainnet'" in flat and "it has: cheap, testnet" in flat


def test_phase_windows_suit_the_block_time_and_reach_the_wallet(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from wallet.settings import WalletSettings
    from wallet.windows import DEFAULT_PHASES, job_windows

    profiles = load_profiles(write_profiles(tmp_path / "networks.toml"))
    given = profiles["testnet"].phase_windows
    assert (given.assign_window_s, given.reveal_window_s) == (400, 600)
    assert given.settle_margin_s == DEFAULT_PHASES.settle_margin_s  # not given: default
    # no [phases]: sized from the block time (12 s blocks, 3 confirmations: 480 s each)
    slow = profiles["cheap"].model_copy(update={"block_time_s": 12.0, "confirmations": 3})
    assert slow.phase_windows.assign_window_s == 480
    assert slow.phase_windows.commit_margin_s == 480
    # a one-second chain keeps the devnet's margins
    assert profiles["cheap"].model_copy(update={"block_time_s": 1.0}).phase_windows == (
        DEFAULT_PHASES
    )

    clean_env.setenv(NETWORKS_FILE_ENV, str(tmp_path / "networks.toml"))
    clean_env.setenv(NETWORK_ENV, "testnet")
    phases = WalletSettings().with_devnet().phase_windows()
    w = job_windows(1_000, 60, 2, phases)
    assert (w.assign_deadline, w.reveal_window) == (1_400, 600)
    assert w.commit_window == 60 + DEFAULT_PHASES.commit_margin_s
    clean_env.delenv(NETWORK_ENV)
    assert WalletSettings().with_devnet().phase_windows() == DEFAULT_PHASES
