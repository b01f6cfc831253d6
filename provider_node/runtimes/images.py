"""OCI image references and the CUDA an image needs, checked before a container runs.

A provider runs images only by digest (``name@sha256:<64 hex>``): a tag can be moved to
other content after the job was priced and checked, a digest cannot. The CUDA version an
image was built for is read from its config (the ``CUDA_VERSION`` variable and
``NVIDIA_REQUIRE_CUDA`` that NVIDIA's base images set, or a ``com.nvidia.cuda.version``
label) and compared with the newest CUDA the host's driver runs, which NVML reports.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.errors import SandboxError

DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"
_REFERENCE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._/:+-]*)@(?P<digest>" + DIGEST_PATTERN + ")$"
)
_VERSION = re.compile(r"^(\d{1,3})\.(\d{1,3})")
_REQUIRE = re.compile(r"cuda>=(\d{1,3}\.\d{1,3})")

CudaVersion = tuple[int, int]
"""(major, minor), e.g. (12, 4)."""


class ImageRefused(SandboxError):
    """The image cannot be run for this job here; raised before anything of it runs.

    ``job_fault`` is True when no provider could run it (the reference names no digest),
    False when another provider could (this host's driver is too old for its CUDA).
    """

    def __init__(self, message: str, *, job_fault: bool) -> None:
        super().__init__(message)
        self.job_fault = job_fault


@dataclass(frozen=True)
class ImageReference:
    """An image named by content: repository (and optional tag) plus its digest."""

    name: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}"


def parse_reference(text: str) -> ImageReference:
    """``text`` as a digest-pinned reference; :class:`ImageRefused` for a bare tag."""
    match = _REFERENCE.match(text)
    if match is None:
        raise ImageRefused(
            f"image {text!r} is not pinned by digest: name it as "
            "'repository@sha256:<64 hex digits>' (the digest `docker images --digests` or "
            "`podman images --digests` shows)",
            job_fault=True,
        )
    return ImageReference(match["name"], match["digest"])


def format_cuda(version: CudaVersion) -> str:
    return f"{version[0]}.{version[1]}"


def parse_cuda(text: str) -> CudaVersion | None:
    match = _VERSION.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


def image_cuda(env: Sequence[str] | None, labels: Mapping[str, str] | None) -> CudaVersion | None:
    """The CUDA version an image's config declares (``None``: it declares none).

    ``env`` is the config's ``KEY=value`` list. ``NVIDIA_REQUIRE_CUDA`` (what NVIDIA's
    container toolkit enforces) wins over ``CUDA_VERSION``, which wins over the label.
    """
    variables = dict(item.partition("=")[::2] for item in env or ())
    required = _REQUIRE.search(variables.get("NVIDIA_REQUIRE_CUDA", ""))
    if required is not None:
        return parse_cuda(required[1])
    for text in (variables.get("CUDA_VERSION"), (labels or {}).get("com.nvidia.cuda.version")):
        if text:
            version = parse_cuda(text)
            if version is not None:
                return version
    return None


def check_cuda(image: str, needed: CudaVersion | None, driver: CudaVersion | None) -> None:
    """Refuse ``image`` when it needs a newer CUDA than ``driver`` runs (or no driver is here)."""
    if needed is None:
        return
    if driver is None:
        raise ImageRefused(
            f"image {image} is built for CUDA {format_cuda(needed)} but this host has no "
            "NVIDIA driver that NVML can report",
            job_fault=False,
        )
    if driver < needed:
        raise ImageRefused(
            f"image {image} is built for CUDA {format_cuda(needed)} but this host's driver "
            f"runs CUDA {format_cuda(driver)} at most; upgrade the driver or pick an image "
            f"built for CUDA <= {format_cuda(driver)}",
            job_fault=False,
        )


def driver_cuda() -> CudaVersion | None:
    """The newest CUDA the host's NVIDIA driver runs, from NVML; ``None`` without a driver."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        version = ctypes.c_int()
        if nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(version)) != 0:
            return None
        return version.value // 1000, (version.value % 1000) // 10
    finally:
        nvml.nvmlShutdown()
