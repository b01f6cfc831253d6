"""Wallet settings: where the keys live and which market to talk to.

Values come from ``WALLET_*`` environment variables, then CLI flags. Accounts are read
from ``keystore_dir`` and, after it, from Foundry's keystore folder. ``--devnet STATE``
fills every endpoint and contract address from a devnet state file, so on the devnet a
requester needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.models import Deployment
from devnet.state import load_state
from protocol.errors import ConfigError

DEFAULT_KEYSTORE_DIR = Path.home() / ".gpumarket" / "keystores"
FOUNDRY_KEYSTORE_DIR = Path.home() / ".foundry" / "keystores"
"""Where ``cast wallet new``/``cast wallet import`` keep their keystores (no suffix)."""


class WalletSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore")

    keystore_dir: Path = DEFAULT_KEYSTORE_DIR
    foundry_keystore_dir: Path | None = FOUNDRY_KEYSTORE_DIR
    """Also offer the accounts Foundry's ``cast wallet`` made (a missing folder is skipped)."""
    account: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    rpc_url: str | None = None
    chain_id: int | None = None
    ipfs_api: str | None = None
    coordinator_url: str | None = None
    coordinator_address: str | None = None
    token_address: str | None = None
    registry_address: str | None = None
    market_address: str | None = None
    devnet_state: Path | None = None

    def with_devnet(self) -> WalletSettings:
        """Fill unset endpoints from the devnet state file, if one is named."""
        if self.devnet_state is None:
            return self
        state = load_state(self.devnet_state)
        coordinator = next((a for a in state.accounts if a.role == "coordinator"), None)
        fill = {
            "rpc_url": state.rpc_url,
            "chain_id": state.chain_id,
            "ipfs_api": state.ipfs_api,
            "coordinator_url": state.coordinator_url,
            "coordinator_address": coordinator.address if coordinator else None,
            "token_address": state.contracts.get("token"),
            "registry_address": state.contracts.get("registry"),
            "market_address": state.contracts.get("market"),
        }
        updates = {k: v for k, v in fill.items() if getattr(self, k) is None and v is not None}
        return self.model_copy(update=updates)

    def need(self, name: str) -> str:
        """A required setting, or a ConfigError naming the variable and flag to set."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(
                f"{name} is not set: set WALLET_{name.upper()} or pass --devnet STATE_FILE"
            )
        return str(value)

    def deployment(self) -> Deployment:
        rpc_chain = self.chain_id
        if rpc_chain is None:
            raise ConfigError("chain_id is not set: set WALLET_CHAIN_ID or pass --devnet")
        return Deployment.from_addresses(
            rpc_chain,
            {
                "token": self.need("token_address"),
                "registry": self.need("registry_address"),
                "market": self.need("market_address"),
            },
        )
