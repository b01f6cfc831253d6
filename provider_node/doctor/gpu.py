"""GPUs and their driver: what torch and NVML see, and whether a CUDA job can run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provider_node.doctor.report import Check, CheckStatus


@dataclass(frozen=True)
class TorchFacts:
    """What the installed torch sees; ``version`` None: torch does not import."""

    version: str | None
    cuda: str | None = None
    """The CUDA version torch was built for (None: a CPU or ROCm build)."""
    hip: str | None = None
    devices: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class NvmlFacts:
    """What the NVIDIA driver reports through NVML; ``available`` False: no NVML here."""

    available: bool
    driver: str | None = None
    cuda_driver: str | None = None
    """The newest CUDA version the driver supports, e.g. ``"13.0"``."""
    devices: tuple[str, ...] = ()
    error: str | None = None


def probe_torch() -> TorchFacts:
    try:
        import torch
    except ImportError as exc:
        return TorchFacts(version=None, error=str(exc))
    devices: tuple[str, ...] = ()
    error = None
    try:
        if torch.cuda.is_available():
            devices = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception as exc:  # a broken driver surfaces as a RuntimeError here
        error = str(exc)
    return TorchFacts(
        version=str(torch.__version__),
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        devices=devices,
        error=error,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml(nvml: Any | None = None) -> NvmlFacts:
    """NVML's view of the GPUs; pass ``nvml`` (an initialised pynvml-like module) to inject."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return NvmlFacts(available=False, error="pynvml (nvidia-ml-py) is not installed")
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return NvmlFacts(available=False, error=f"NVML does not start: {exc}")
        nvml = pynvml
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda_int = int(nvml.nvmlSystemGetCudaDriverVersion())
        names = tuple(
            _text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(int(nvml.nvmlDeviceGetCount()))
        )
    except Exception as exc:
        return NvmlFacts(available=True, error=f"NVML read failed: {exc}")
    cuda = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
    return NvmlFacts(available=True, driver=driver, cuda_driver=cuda, devices=names)


TORCH_CUDA_FIX = (
    "install a CUDA build of torch no newer than the driver supports, e.g. "
    "`pip install torch --index-url https://download.pytorch.org/whl/cu126`"
)


NVML_FIX = "`pip install nvidia-ml-py` (health checks and GPU utilization read NVML)"


def check_gpus(torch: TorchFacts, nvml: NvmlFacts, *, cpu_only: bool) -> Check:
    name = "gpus"
    if torch.version is None:
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            f"torch does not import: {torch.error}",
            "install the project's dependencies: `pip install -e .`",
        )
    seen = len(torch.devices)
    listed = len(nvml.devices)
    if seen == 0 and listed == 0:
        found = f"no GPU visible to torch {torch.version}, nor to NVML"
        found += f" ({nvml.error})" if nvml.error else ""
        if torch.error:
            found += f" ({torch.error})"
        if cpu_only:
            return Check(
                name, CheckStatus.OK, True, found + "; offering the CPU (PROVIDER_CPU_ONLY)"
            )
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            found,
            "set PROVIDER_CPU_ONLY=true to offer the CPU, or install the GPU driver",
        )
    if seen == 0:
        why = torch.error or f"torch {torch.version} is built for " + (
            f"CUDA {torch.cuda}" if torch.cuda else "the CPU only"
        )
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            f"NVML lists {listed} GPU(s) ({', '.join(nvml.devices)}) but torch sees none: {why}",
            TORCH_CUDA_FIX,
        )
    found = f"torch sees {seen} GPU(s): {', '.join(torch.devices)}"
    if not nvml.available:
        return Check(
            name, CheckStatus.WARN, False, f"{found}; NVML unavailable ({nvml.error})", NVML_FIX
        )
    if nvml.error:
        return Check(
            name,
            CheckStatus.WARN,
            False,
            f"{found}; {nvml.error}",
            "check the driver with `nvidia-smi`",
        )
    if listed != seen:
        return Check(
            name,
            CheckStatus.WARN,
            False,
            f"{found}, NVML lists {listed}: some GPUs are hidden (CUDA_VISIBLE_DEVICES) or failing",
            "unset CUDA_VISIBLE_DEVICES, or check `nvidia-smi -q` for the missing GPUs",
        )
    return Check(name, CheckStatus.OK, True, f"{found}; NVML lists the same {listed}")


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_driver(torch: TorchFacts, nvml: NvmlFacts) -> Check:
    name = "driver"
    if not nvml.available or nvml.cuda_driver is None:
        if torch.devices:
            return Check(
                name,
                CheckStatus.OK,
                True,
                f"torch {torch.version} (CUDA {torch.cuda or torch.hip}) runs on "
                "this driver (NVML not available to read its version)",
            )
        return Check(
            name,
            CheckStatus.OK,
            False,
            f"NVML unavailable ({nvml.error}) and no GPU visible to torch: "
            "no driver to match against torch",
        )
    found = f"driver {nvml.driver} supports CUDA up to {nvml.cuda_driver}"
    if torch.cuda is None:
        if not nvml.devices:
            return Check(name, CheckStatus.OK, False, found + "; no GPU to drive")
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            found + f"; torch {torch.version} has no CUDA",
            TORCH_CUDA_FIX,
        )
    if _version(torch.cuda)[:2] > _version(nvml.cuda_driver)[:2]:
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            f"{found}, older than torch's CUDA {torch.cuda}",
            f"upgrade the NVIDIA driver to one supporting CUDA {torch.cuda}, or "
            f"install a torch built for CUDA {nvml.cuda_driver} or older",
        )
    return Check(name, CheckStatus.OK, True, f"{found}; torch is built for CUDA {torch.cuda}")
