"""Decode the three contracts' logs into :class:`ChainEvent` values."""

from __future__ import annotations

from typing import Any

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data
from web3.types import LogReceipt

from contracts.abi import load_artifact
from contracts.models import ChainEvent, Deployment

_NAMES = {"token": "TestUSD", "market": "JobMarket"}


class EventDecoder:
    """Knows every event of the deployment's contracts by address and topic (the registry's
    events come from the market contract and are reported as "market")."""

    def __init__(self, deployment: Deployment) -> None:
        self._codec = Web3().codec
        self._by_key: dict[tuple[str, bytes], tuple[str, Any]] = {}
        self._topics: dict[str, str] = {}
        for role, artifact in _NAMES.items():
            address = getattr(deployment, role).lower()
            for item in load_artifact(artifact).abi:
                if item.get("type") == "event":
                    topic = bytes(event_abi_to_log_topic(item))  # type: ignore[arg-type]
                    self._by_key[(address, topic)] = (role, item)
                    self._topics[item["name"]] = "0x" + topic.hex()

    def topic(self, name: str) -> str:
        """topic0 (hex) of an event by name."""
        return self._topics[name]

    def decode(self, log: LogReceipt) -> ChainEvent | None:
        """The decoded event, or None for a log of another contract or unknown topic."""
        if not log["topics"]:
            return None
        key = (str(log["address"]).lower(), bytes(log["topics"][0]))
        found = self._by_key.get(key)
        if found is None:
            return None
        role, abi = found
        data = get_event_data(self._codec, abi, log)  # type: ignore[arg-type, unused-ignore]
        return ChainEvent(
            name=data["event"],
            contract=role,
            args={k: _plain(v) for k, v in data["args"].items()},
            block_number=data["blockNumber"],
            tx_hash="0x" + bytes(data["transactionHash"]).hex(),
            log_index=data["logIndex"],
        )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return bytes(value)
    return value
