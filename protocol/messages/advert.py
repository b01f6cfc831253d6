"""Provider adverts, gossiped on :data:`protocol.registry.ADVERT_TOPIC`.

An advert says what a provider has (GPUs, measured performance, software fingerprint),
what it charges and where to dial it. The provider signs it; the signer must equal
``provider`` and ``peer_id`` must derive from the same key. ``seq`` rises with every
advert from one provider and ``expires_at`` bounds how long it counts: silence means gone.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
    model_validator,
)

from protocol.compat import CAPABILITY_PATTERN, VERSION_PATTERN
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


class _Optional(_Part):
    """A part with fields added after adverts were first signed (:data:`LATER_FIELDS`):
    left out of the encoding while unset, so an advert from a provider that does not know
    them encodes (and verifies) exactly as it was signed."""

    LATER_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.LATER_FIELDS:
                if data.get(name) is None:
                    data.pop(name, None)
        return data


Capability = Annotated[StrictStr, Field(pattern=CAPABILITY_PATTERN)]
Version = Annotated[StrictStr, Field(pattern=VERSION_PATTERN)]


class GpuInfo(_Optional):
    """One GPU as the driver reports it."""

    LATER_FIELDS: ClassVar[frozenset[str]] = frozenset({"compute_capability"})

    name: Text128
    memory_bytes: Annotated[StrictInt, Field(ge=0, le=2**50)]
    compute_capability: Capability | None = None
    """NVIDIA's ``major.minor`` (``9.0`` for an H100); None elsewhere or unknown."""


class Benchmark(_Part):
    """Measured (not datasheet) performance per GPU, or of the CPU when there is none."""

    tflops: dict[Dtype, Tflops]
    memory_bandwidth_gbps: Bandwidth
    host_to_device_gbps: Bandwidth | None = None


class Fingerprint(_Optional):
    """What must match for two providers' ``exact`` results to be comparable, and the
    versions a spec's ``resources.requires`` is matched against."""

    LATER_FIELDS: ClassVar[frozenset[str]] = frozenset({"driver_cuda"})

    backend: Backend
    gpu_model: Text128
    driver: ShortText | None = None
    cuda: ShortText | None = None
    rocm: ShortText | None = None
    torch: ShortText
    driver_cuda: Version | None = None
    """The newest CUDA version the NVIDIA driver supports (what a container's CUDA runtime
    needs); ``cuda`` is the version torch was built with."""


MAX_QUEUED = 64
"""The most queued jobs an advert may announce (``PROVIDER_MAX_QUEUED_JOBS``'s bound)."""
MAX_INPUT_LIMIT = 1 << 50
"""The largest input limit an advert may state (1 PiB); a provider taking more states this."""
LATER_ADVERT_FIELDS = ("max_queued", "max_input_bytes")
"""Advert fields added after adverts were first signed: left out of the encoding while unset."""


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
    max_queued: Annotated[StrictInt, Field(ge=0, le=MAX_QUEUED)] | None = None
    """Jobs it accepts beyond its running ones, to wait for a job slot
    (``PROVIDER_MAX_QUEUED_JOBS``); None: none, as far as a coordinator knows. Left out of the
    encoding while unset, so an advert from a provider that does not send it encodes (and
    verifies) exactly as it was signed."""
    max_input_bytes: Annotated[StrictInt, Field(ge=1, le=MAX_INPUT_LIMIT)] | None = None
    """The most bytes of input (all of a job's inputs together) it fetches for a job
    (``PROVIDER_MAX_INPUT_BYTES``); None: no limit stated. Left out of the encoding while
    unset, like ``max_queued``."""

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in LATER_ADVERT_FIELDS:
                if data.get(name) is None:
                    data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _free_gpus_exist(self) -> Advert:
        if self.free_gpus > len(self.gpus):
            raise ValueError(f"free_gpus {self.free_gpus} exceeds the {len(self.gpus)} GPUs")
        return self

    @property
    def cpu_only(self) -> bool:
        return not self.gpus
