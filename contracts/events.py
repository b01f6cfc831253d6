"""Decode the token's and the market's logs into :class:`ChainEvent` values."""

from __future__ import annotations

from typing import Any

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data
from web3.types import LogReceipt

from contracts.abi import load_artifact, market_abi
from contracts.models import ChainEvent, Deployment


class EventDecoder:
    """Knows every event of the deployment's contracts by address and topic (the registry's
    events come from the market contract and are reported as "market")."""

    def __init__(self, deployment: Deployment) -> None:
        self._codec = Web3().codec
        self._by_key: dict[tuple[str, bytes], tuple[str, Any]] = {}
        self._topics: dict[str, str] = {}
        abis = {"token": load_artifact("TestUSD").abi, "market": market_abi()}
        for role, abi in abis.items():
            address = getattr(deployment, role).lower()
            for item in abi:
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
        args = {k: _plain(v) for k, v in data["args"].items()}
        unpack = _UNPACK.get(data["event"])
        if unpack is not None:
            args = unpack(args)
        return ChainEvent(
            name=data["event"],
            contract=role,
            args=args,
            block_number=data["blockNumber"],
            tx_hash="0x" + bytes(data["transactionHash"]).hex(),
            log_index=data["logIndex"],
        )


def _plain(value: Any) -> Any:
    """bytes as bytes and arrays as lists, as the in-memory fake emits them."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _fields(word: int, layout: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """Split a packed word into named fields, low bits first."""
    out = {}
    for name, bits in layout:
        out[name] = word & ((1 << bits) - 1)
        word >>= bits
    return out


MONEY_LAYOUT = (("redundancy", 8), ("mode", 8), ("priceCap", 64), ("fee", 64), ("timeoutMs", 64))
TIMES_LAYOUT = (
    ("assignDeadline", 32),
    ("commitWindow", 32),
    ("revealWindow", 32),
    ("spareDeadline", 32),
    ("settleDeadline", 32),
)
SEAT_LAYOUT = (("price", 64), ("ratePerHour", 64), ("assignedAt", 32), ("seat", 8))


Layout = tuple[tuple[str, int], ...]


def _replace(args: dict[str, Any], packed: dict[str, Layout]) -> dict[str, Any]:
    """``args`` with each packed word replaced, in place, by its named fields."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        layout = packed.get(name)
        if layout is None:
            out[name] = value
        else:
            out |= _fields(value, layout)
    return out


def _unpack_created(args: dict[str, Any]) -> dict[str, Any]:
    return _replace(args, {"money": MONEY_LAYOUT, "times": TIMES_LAYOUT})


def _unpack_assigned(args: dict[str, Any]) -> dict[str, Any]:
    fields = _fields(args["seatInfo"], SEAT_LAYOUT)
    # the seat first, as the in-memory chain and every reader list it
    return {"jobId": args["jobId"], "provider": args["provider"], "seat": fields.pop("seat")} | (
        fields
    )


_UNPACK = {"JobCreated": _unpack_created, "ProviderAssigned": _unpack_assigned}
"""Events whose small fields the contract packs into one word (to save log gas); decoded
events carry the fields by their names, as the in-memory chain emits them."""


def decoded_arg_names(event: dict[str, Any]) -> list[str]:
    """The argument names a decoded ``event`` (an ABI item) carries, packed words unpacked."""
    names = [i["name"] for i in event["inputs"]]
    unpack = _UNPACK.get(event["name"])
    if unpack is None:
        return names
    return list(unpack({name: 0 for name in names}))
