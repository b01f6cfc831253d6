"""The provider on chain: keystore, RPC and market, registration, stake, gas money, and
the clock that deadlines and adverts are measured by."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.errors import GpuMarketError
from protocol.ids import format_tokens
from provider_node.doctor.report import Check, CheckStatus

if TYPE_CHECKING:
    from provider_node.doctor.runner import HostProbes
    from provider_node.settings import ProviderSettings
    from provider_node.staking import ProviderChain


CLOCK_OK_S = 10
"""Skew between this host's clock and the chain's up to which deadlines and adverts agree."""


def check_registration(registered: bool, *, gas_short: str | None) -> Check:
    if registered:
        return Check("registration", CheckStatus.OK, False, "registered as a provider on chain")
    if gas_short:
        return Check(
            "registration",
            CheckStatus.FAIL,
            True,
            f"not registered, and the account cannot pay the gas: {gas_short}",
            "send the account some of the chain's native token",
        )
    return Check(
        "registration",
        CheckStatus.WARN,
        False,
        "not registered yet",
        "nothing to do: the daemon registers at start (or run `gpumarket provider register`)",
    )


def check_stake(bonded: int, balance: int, target: int) -> Check:
    found = (
        f"{format_tokens(bonded)} tokens bonded, target {format_tokens(target)} (PROVIDER_STAKE)"
    )
    missing = max(0, target - bonded)
    if not missing:
        return Check("stake", CheckStatus.OK, True, found)
    if balance >= missing:
        return Check(
            "stake",
            CheckStatus.OK,
            True,
            f"{found}; the daemon bonds the missing {format_tokens(missing)} at start "
            f"from the {format_tokens(balance)} held",
        )
    return Check(
        "stake",
        CheckStatus.FAIL,
        True,
        f"{found}; {format_tokens(missing)} more are needed but the account holds "
        f"{format_tokens(balance)}",
        f"send the account {format_tokens(missing - balance)} tokens, or lower PROVIDER_STAKE",
    )


def check_gas(fallback_warning: str | None, start_short: str | None) -> Check:
    if start_short is not None:
        return Check(
            "gas",
            CheckStatus.FAIL,
            True,
            f"cannot pay the gas to register or bond at start: {start_short}",
            "send the account some of the chain's native token",
        )
    if fallback_warning is not None:
        return Check(
            "gas",
            CheckStatus.WARN,
            False,
            fallback_warning,
            "send the account enough native token for on-chain commits and reveals",
        )
    return Check(
        "gas",
        CheckStatus.OK,
        False,
        "enough native token to commit and reveal running jobs on chain if their coordinator "
        "vanishes",
    )


def check_clock(local: float, chain_time: int, ttl_s: int) -> Check:
    skew = local - chain_time
    found = (
        f"this host's clock is {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} "
        "the chain's newest block"
    )
    if abs(skew) <= CLOCK_OK_S:
        return Check("clock", CheckStatus.OK, False, found)
    fix = "synchronise the clock (`timedatectl set-ntp true`, chrony or systemd-timesyncd)"
    if abs(skew) > ttl_s:
        return Check(
            "clock",
            CheckStatus.FAIL,
            False,
            f"{found}: adverts (valid {ttl_s} s) arrive already expired or too long-lived",
            fix,
        )
    return Check("clock", CheckStatus.WARN, False, found, fix)


def chain_checks(
    settings: ProviderSettings, probes: HostProbes, chain: ProviderChain | None = None
) -> list[Check]:
    """RPC, keystore, registration, stake, gas and clock; stops at the first one the
    rest depend on."""
    from protocol.identity import load_keystore
    from provider_node import staking
    from provider_node.daemon import connect_chain

    checks: list[Check] = []
    if chain is None:
        try:
            identity = load_keystore(settings.keystore, settings.keystore_password())
        except GpuMarketError as exc:
            checks.append(
                Check(
                    "keystore",
                    CheckStatus.FAIL,
                    True,
                    str(exc),
                    "set PROVIDER_KEYSTORE and PROVIDER_PASSWORD_FILE to the "
                    "provider's keystore and its password file",
                )
            )
            return checks
        checks.append(Check("keystore", CheckStatus.OK, True, f"unlocked {identity.address}"))
        try:
            chain = connect_chain(settings, identity)
        except GpuMarketError as exc:
            checks.append(
                Check(
                    "rpc",
                    CheckStatus.FAIL,
                    True,
                    str(exc),
                    "start the chain node or set PROVIDER_RPC_URL (and "
                    "PROVIDER_CHAIN_ID) to a reachable one",
                )
            )
            return checks
        code = chain.w3.eth.get_code(chain.w3.to_checksum_address(settings.market))
        if not code:
            checks.append(
                Check(
                    "rpc",
                    CheckStatus.FAIL,
                    True,
                    f"no contract at PROVIDER_MARKET_ADDRESS {settings.market} "
                    f"on chain {chain.deployment.chain_id}",
                    "set PROVIDER_MARKET_ADDRESS (or PROVIDER_NETWORK) to the "
                    "market deployed on this chain",
                )
            )
            return checks
        checks.append(
            Check(
                "rpc",
                CheckStatus.OK,
                True,
                f"{settings.rpc_url} serves chain {chain.deployment.chain_id} "
                "with the market deployed",
            )
        )
    try:
        info = chain.provider_info(chain.address)
        balance = chain.token_balance(chain.address)
        needed_gas = (0 if info.registered else staking.GAS_BOUNDS["register"]) + (
            staking.GAS_BOUNDS["stake"] if info.stake < settings.stake_wei else 0
        )
        short = chain.gas_shortfall(needed_gas) if needed_gas else None
        fallback = staking.fallback_gas_warning(chain, settings.max_concurrent_jobs)
        latest = chain.now()
        pending = getattr(chain, "next_block_time", None)
        chain_time = max(latest, int(pending())) if callable(pending) else latest
    except GpuMarketError as exc:
        checks.append(
            Check(
                "chain",
                CheckStatus.FAIL,
                True,
                f"reading the chain failed: {exc}",
                "check PROVIDER_RPC_URL and the contract addresses",
            )
        )
        return checks
    start_short = str(short) if short is not None else None
    checks.append(check_registration(info.registered, gas_short=start_short))
    checks.append(check_stake(info.stake, balance, settings.stake_wei))
    checks.append(check_gas(fallback, start_short))
    checks.append(check_clock(probes.clock(), chain_time, settings.advert_ttl_s))
    return checks
