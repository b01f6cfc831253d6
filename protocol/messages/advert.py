"""Provider adverts, gossiped on :data:`protocol.registry.ADVERT_TOPIC`.

An advert says what a provider has (GPUs, measured performance, software fingerprint),
what it charges and where to dial it. The provider signs it; the signer must equal
``provider`` and ``peer_id`` must derive from the same key. ``seq`` rises with every
advert from one provider and ``expires_at`` bounds how long it counts: silence means gone.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from protocol.fields import (
    AddressField,
    FiniteFloat,
    NameStr,
    NonNegFloat,
    PeerIdField,
    ShortText,
    Text128,
    Text256,
    Timestamp,
    WeiField,
)
from protocol.messages.base import WireMessage
from protocol.packages import MAX_OFFERED
from protocol.registry import MAX_GPUS_PER_NODE, MAX_MULTIADDRS

Dtype = Literal["fp32", "tf32", "fp16", "bf16"]
DTYPES: tuple[Dtype, ...] = ("fp32", "tf32", "fp16", "bf16")
RuntimeKind = Literal["torch", "container"]
Backend = Literal["cuda", "rocm", "mps", "cpu"]

Tflops = Annotated[FiniteFloat, Field(ge=0, le=1e6)]
Bandwidth = Annotated[NonNegFloat, Field(le=1e6)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuInfo(_Part):
    """One GPU as the driver reports it."""

    name: Text128
    memory_bytes: Annotated[StrictInt, Field(ge=0, le=2**50)]


class Benchmark(_Part):
    """Measured (not datasheet) performance per GPU, or of the CPU when there is none."""

    tflops: dict[Dtype, Tflops]
    memory_bandwidth_gbps: Bandwidth
    host_to_device_gbps: Bandwidth | None = None


class Fingerprint(_Part):
    """What must match for two providers' ``exact`` results to be comparable."""

    backend: Backend
    gpu_model: Text128
    driver: ShortText | None = None
    cuda: ShortText | None = None
    rocm: ShortText | None = None
    torch: ShortText


class Advert(WireMessage):
    """A provider's signed offer of compute."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["advert"] = "advert"
    provider: AddressField
    peer_id: PeerIdField
    multiaddrs: Annotated[tuple[Text256, ...], Field(min_length=1, max_length=MAX_MULTIADDRS)]
    gpus: Annotated[tuple[GpuInfo, ...], Field(max_length=MAX_GPUS_PER_NODE)]
    benchmark: Benchmark
    fingerprint: Fingerprint
    price_per_gpu_hour: WeiField
    """Base units per GPU-hour: a seat of a job asking for g GPUs is billed g times this."""
    price_per_cpu_hour: WeiField
    """Base units per hour for a seat of a job asking for no GPU (``gpus: 0``)."""
    free_gpus: Annotated[StrictInt, Field(ge=0, le=MAX_GPUS_PER_NODE)]
    utilization: Annotated[FiniteFloat, Field(ge=0, le=1)]
    """Job-slot occupancy: running jobs / concurrent job slots (coordinators learn a
    provider's slot count from it)."""
    gpu_utilization: Annotated[FiniteFloat, Field(ge=0, le=1)] | None = None
    """The advertised GPUs' mean busy fraction as NVML reports it; None where the provider
    cannot read NVML (or has no GPU)."""
    runtimes: Annotated[tuple[RuntimeKind, ...], Field(min_length=1, max_length=4)]
    software: Annotated[dict[NameStr, ShortText], Field(max_length=16)]
    """Component versions, e.g. ``{"gpumarket": "0.1.0", "python": "3.11.9"}``."""
    packages: Annotated[dict[NameStr, ShortText], Field(max_length=MAX_OFFERED)] = Field(
        default_factory=dict
    )
    """Python distributions the torch runtime can import, name to version (what a spec's
    ``runtime.packages`` is matched against); empty for a provider without one."""
    seq: Annotated[StrictInt, Field(ge=0, lt=2**63)]
    expires_at: Timestamp

    @model_validator(mode="after")
    def _free_gpus_exist(self) -> Advert:
        if self.free_gpus > len(self.gpus):
            raise ValueError(f"free_gpus {self.free_gpus} exceeds the {len(self.gpus)} GPUs")
        return self

    @property
    def cpu_only(self) -> bool:
        return not self.gpus
