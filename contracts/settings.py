"""What every deployable that works the market (coordinator, provider daemon) is set with.

Each deployable's settings class derives from :class:`ChainSettings`, names its
environment prefix in ``model_config`` and the network-profile fields it takes in
``PROFILE_FIELDS``, and is read with :meth:`ChainSettings.load`: the environment, then
the network profile for chain settings left unset, then keyword overrides (CLI flags). A
missing or invalid setting raises :class:`protocol.errors.ConfigError` naming the
environment variable to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode

from contracts.network import apply_profile, send_policy_for
from contracts.sender import SendPolicy
from protocol.errors import ConfigError, MessageError
from protocol.identity import read_password_file
from protocol.ids import Address, parse_address
from protocol.ipfs.peers import parse_gateways, parse_peers
from protocol.p2p.addresses import check_listen, parse_announce

IpfsPeers = Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_peers)]
"""A setting naming other IPFS nodes' swarm multiaddrs (comma-separated text or a list)."""
IpfsGateways = Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_gateways)]
"""A setting naming IPFS gateways' base URLs (comma-separated text or a list)."""


class ChainSettings(BaseSettings):
    """The chain, IPFS (own API, peers, gateways), keystore password and libp2p (listen,
    announce) settings the deployables share."""

    PROFILE_FIELDS: ClassVar[dict[str, str]] = {
        "rpc_url": "rpc_url",
        "chain_id": "chain_id",
        "market_address": "market",
        "registry_address": "registry_address",
        "token_address": "token",
        "ipfs_api": "ipfs_api",
    }
    """Settings a network profile fills (settings field: profile attribute)."""
    WHAT: ClassVar[str] = "settings"
    """What the settings configure, for error messages ("invalid coordinator settings")."""

    network: str | None = None
    """A network profile (``contracts/network.py``) that fills the chain settings left
    unset: RPC URL, chain id, addresses, fee caps, confirmations."""
    networks_file: Path | None = None
    rpc_url: str
    chain_id: int | None = Field(default=None, gt=0)
    """The chain id the RPC must serve (unset: whatever it serves)."""
    market_address: str
    registry_address: str
    token_address: str
    password_file: Path | None = None
    password: SecretStr | None = None
    ipfs_api: str
    ipfs_peers: IpfsPeers = ()
    """Comma-separated swarm multiaddrs (``.../p2p/<peer id>``) of other participants' IPFS
    nodes for this node's daemon to dial, so bitswap reaches what they hold."""
    ipfs_gateways: IpfsGateways = ()
    """Comma-separated read-only HTTP gateways of nodes to stream files from directly
    (every byte still verified against the CID); the daemon's bitswap is the fallback."""
    p2p_host: str = "127.0.0.1"
    p2p_port: int = Field(default=0, ge=0, le=65535)
    listen: str | None = None
    """The libp2p listen multiaddr (replaces ``p2p_host``/``p2p_port``), e.g.
    ``/ip4/0.0.0.0/tcp/4001`` to accept connections on every interface."""
    announce: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated multiaddrs others should dial (without ``/p2p/``), e.g. the public
    address a NAT forwards to the listen port; empty: the listen addresses."""

    @field_validator("market_address", "registry_address", "token_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return parse_address(value)
        except MessageError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        return None if value is None else check_listen(value)

    @field_validator("announce", mode="before")
    @classmethod
    def _announce(cls, value: Any) -> Any:
        return parse_announce(value)

    @classmethod
    def env_prefix(cls) -> str:
        """The prefix of this deployable's environment variables (``PROVIDER_``, ...)."""
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        return f"{cls.env_prefix()}{field.upper()}"

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Settings from the environment with ``overrides`` (None values ignored) on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        given, _ = apply_profile(cls.env_prefix(), given, cls.PROFILE_FIELDS)
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False):
                field = str(err["loc"][0]) if err["loc"] else "settings"
                if err["type"] == "missing":
                    problems.append(f"{cls.env_name(field)} is not set")
                else:
                    problems.append(f"{cls.env_name(field)}: {err['msg']}")
            raise ConfigError(f"invalid {cls.WHAT}: " + "; ".join(problems)) from None

    @property
    def market(self) -> Address:
        """The market contract's address."""
        return Address(self.market_address)

    @property
    def registry(self) -> Address:
        """The registry contract's address."""
        return Address(self.registry_address)

    @property
    def token(self) -> Address:
        """The payment token's address."""
        return Address(self.token_address)

    @property
    def listen_multiaddr(self) -> str:
        """The libp2p address to listen on: the ``listen`` setting, else host and port."""
        return self.listen or f"/ip4/{self.p2p_host}/tcp/{self.p2p_port}"

    def send_policy(self) -> SendPolicy:
        """Fee caps, replacement and confirmations: the network profile's, else defaults."""
        return send_policy_for(self.network, self.networks_file)

    def keystore_password(self) -> SecretStr:
        """The keystore password, from the password file or the password variable."""
        if self.password_file is not None:
            return read_password_file(self.password_file, self.env_name("password_file"))
        if self.password is not None:
            return self.password
        raise ConfigError(
            f"set {self.env_name('password_file')} (or {self.env_name('password')}) "
            "for the keystore"
        )
