"""The job spec: what to run, on what, how to check it, what it may cost.

Frozen pydantic models mirroring the YAML a requester writes (see ``examples/``).
Reading, error translation and the canonical form live in :mod:`protocol.spec_io`::

    name: seeded-matmul
    runtime: {kind: torch, entrypoint: main.py, packages: {numpy: ">=1.26"}}
    inputs:
      - {name: code, path: ./examples/matmul/}
      - {name: data, cid: bafy...}
    resources: {gpus: 1, gpu_memory_gb: 16, min_tflops: {bf16: 100}}
    verification: {redundancy: 2, compare: exact}
    price: {max_per_provider: "2.50"}
    timeout: 10m
    max_output: 1GiB
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from protocol.fields import ContentCidField, FiniteFloat, NameStr
from protocol.ids import Cid
from protocol.packages import MAX_REQUIRED, check_name, check_specifier, check_unique
from protocol.registry import MAX_GPUS_PER_NODE
from protocol.spec_fields import (
    Duration,
    RelativePath,
    Size,
    SpecModel,
    TokenAmount,
    field_error,
)

MAX_INPUTS = 64
MAX_ARGS = 64
MAX_ARG_CHARS = 4096
MAX_PATH_CHARS = 4096
MAX_REDUNDANCY = 5


def _package_name(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("package", "a package name must be text")
    try:
        return check_name(value)
    except ValueError as exc:
        raise PydanticCustomError("package", str(exc)) from None


def _specifier(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "package", 'a version specifier must be text: quote it, e.g. ">=2.3"'
        )
    try:
        return check_specifier(value)
    except ValueError as exc:
        raise PydanticCustomError("package", str(exc)) from None


PackageName = Annotated[str, PlainValidator(_package_name)]
Specifier = Annotated[str, PlainValidator(_specifier)]


class TorchRuntime(SpecModel):
    """A Python entrypoint run with torch available, in the provider's Python environment.

    ``packages`` names the distributions the code imports beyond the standard library, with
    PEP 440 specifiers (``""``: any version); only providers whose torch runtime offers
    them all are matched. Code that needs another environment runs as a container."""

    kind: Literal["torch"]
    entrypoint: RelativePath
    args: Annotated[
        tuple[Annotated[StrictStr, Field(max_length=MAX_ARG_CHARS)], ...],
        Field(max_length=MAX_ARGS),
    ] = ()
    packages: Annotated[dict[PackageName, Specifier], Field(max_length=MAX_REQUIRED)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _python_entrypoint(self) -> TorchRuntime:
        if not self.entrypoint.endswith(".py"):
            raise field_error("entrypoint", "must be a .py file")
        try:
            check_unique(self.packages)
        except ValueError as exc:
            raise field_error("packages", str(exc)) from None
        return self


class ContainerRuntime(SpecModel):
    """An OCI image and the command to run in it."""

    kind: Literal["container"]
    image: Annotated[
        StrictStr, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
    ]
    command: Annotated[
        tuple[Annotated[StrictStr, Field(max_length=MAX_ARG_CHARS)], ...],
        Field(min_length=1, max_length=MAX_ARGS),
    ]


Runtime = Annotated[TorchRuntime | ContainerRuntime, Field(discriminator="kind")]


class InputSpec(SpecModel):
    """One input mounted read-only at ``inputs/<name>/``: a local ``path`` or a ``cid``.

    A ``cid`` must be one providers can verify the fetched content against (sha2-256,
    raw or dag-pb), so a job that no provider could run is refused before it is paid for.
    """

    name: NameStr
    path: Annotated[StrictStr, Field(min_length=1, max_length=MAX_PATH_CHARS)] | None = None
    cid: ContentCidField | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InputSpec:
        if (self.path is None) == (self.cid is None):
            raise PydanticCustomError("input_source", "give exactly one of 'path' or 'cid'")
        if self.path is not None and "\x00" in self.path:
            raise field_error("path", "contains a NUL character")
        return self


Tflops = Annotated[FiniteFloat, Field(gt=0, le=1e6)]


class MinTflops(SpecModel):
    """Minimum measured TFLOPS per GPU, by dtype."""

    fp32: Tflops | None = None
    tf32: Tflops | None = None
    fp16: Tflops | None = None
    bf16: Tflops | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Resources(SpecModel):
    """GPUs on one node (0 = CPU only), memory per GPU, and measured speed floors."""

    gpus: Annotated[StrictInt, Field(ge=0, le=MAX_GPUS_PER_NODE)] = 0
    gpu_memory_gb: Annotated[FiniteFloat, Field(gt=0, le=4096)] | None = None
    min_tflops: MinTflops = MinTflops()

    @model_validator(mode="after")
    def _memory_needs_gpus(self) -> Resources:
        if self.gpus == 0 and self.gpu_memory_gb is not None:
            raise field_error("gpu_memory_gb", "needs gpus >= 1 (gpus: 0 means CPU only)")
        return self


Tolerance01 = Annotated[FiniteFloat, Field(ge=0, le=1)]


class Tolerance(SpecModel):
    """``|a - b| <= atol + rtol * |b|`` elementwise, as numpy's ``isclose``."""

    rtol: Tolerance01 = 0.0
    atol: Tolerance01 = 0.0

    @model_validator(mode="after")
    def _not_exact(self) -> Tolerance:
        if self.rtol == 0 and self.atol == 0:
            raise PydanticCustomError(
                "tolerance", "rtol and atol are both 0; use compare: exact instead"
            )
        return self


class ToleranceCompare(SpecModel):
    tolerance: Tolerance


def _compare_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "exact"
    if isinstance(value, dict | ToleranceCompare):
        return "tolerance"
    return None


Compare = Annotated[
    Annotated[Literal["exact"], Tag("exact")] | Annotated[ToleranceCompare, Tag("tolerance")],
    Discriminator(
        _compare_kind,
        custom_error_type="compare",
        custom_error_message="must be 'exact' or {tolerance: {rtol: ..., atol: ...}}",
    ),
]


def _redundancy(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be 'auto' or a whole number from 1 to {MAX_REDUNDANCY}")
    if not 1 <= value <= MAX_REDUNDANCY:
        raise ValueError(f"must be between 1 and {MAX_REDUNDANCY}, got {value}")
    return value


class Verification(SpecModel):
    """How many providers run the job and how their results are compared."""

    redundancy: Annotated[int | Literal["auto"], PlainValidator(_redundancy)] = "auto"
    compare: Compare = "exact"


class Price(SpecModel):
    """The most the requester pays each provider for this job (payment-token units)."""

    max_per_provider: TokenAmount


class JobSpec(SpecModel):
    """A whole job spec. ``timeout`` and ``expected_duration`` are seconds, ``max_output`` bytes."""

    version: Literal[1] = 1
    name: NameStr
    runtime: Runtime
    inputs: Annotated[tuple[InputSpec, ...], Field(max_length=MAX_INPUTS)] = ()
    outputs: RelativePath = "outputs"
    resources: Resources = Resources()
    verification: Verification = Verification()
    price: Price
    timeout: Duration = 600
    expected_duration: Duration | None = None
    max_output: Size = 2**30

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        names = [item.name for item in self.inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise field_error("inputs", "input names must be unique; repeated: {names}",
                              names=", ".join(duplicates))  # fmt: skip
        if self.expected_duration is not None and self.expected_duration > self.timeout:
            raise field_error("expected_duration", "must not exceed timeout")
        return self

    @property
    def billed_duration_s(self) -> int:
        """What pricing multiplies the hourly rate by: expected duration, else the timeout."""
        return self.expected_duration if self.expected_duration is not None else self.timeout

    @property
    def is_resolved(self) -> bool:
        """True when every input is a CID (nothing local left to upload)."""
        return all(item.cid is not None for item in self.inputs)

    def input_cids(self) -> dict[str, Cid]:
        return {item.name: item.cid for item in self.inputs if item.cid is not None}

    def with_input_cids(self, uploaded: dict[str, Cid]) -> JobSpec:
        """The spec with path inputs replaced by the CIDs they were uploaded as."""
        inputs = []
        for item in self.inputs:
            if item.path is not None and item.name in uploaded:
                item = InputSpec(name=item.name, cid=uploaded[item.name])
            inputs.append(item)
        return self.model_copy(update={"inputs": tuple(inputs)})
