"""The environment a job starts with: built from nothing, the same on every provider.

Nothing of the provider's own environment leaks in (no tokens, no proxy settings, no
``HOME``). Names the runtime sets for determinism and device assignment cannot be overridden
by the job's spec.

``PYTHONHASHSEED`` is one fixed value for every job rather than derived from the job's seed:
the interpreter reads it once, at start, and a warm sandbox starts before its job (and so
its seed) is known. Every replica of a job still hashes strings the same way.
"""

from __future__ import annotations

from protocol.errors import SandboxError
from provider_node.runtimes.model import INPUTS_DIR, OUTPUTS_DIR, PreparedJob

HASH_SEED = "0"
"""``PYTHONHASHSEED`` of every job: string hashing is the same on every provider and run."""

RESERVED = frozenset(
    {
        "GPUMARKET_SEED",
        "GPUMARKET_INPUT_DIR",
        "GPUMARKET_OUTPUT_DIR",
        "PYTHONHASHSEED",
        "CUBLAS_WORKSPACE_CONFIG",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "HOME",
        "TMPDIR",
        "PATH",
    }
)


def sandbox_env(
    gpus: tuple[int, ...],
    *,
    root: str,
    home: str,
    tmp: str,
    path: str,
    cuda_visible: str | None = None,
) -> dict[str, str]:
    """What every sandbox on ``gpus`` starts with, whatever job it will run.
    ``cuda_visible`` names the GPUs for CUDA where a runtime shows the job only its own
    (default: the host's indices)."""
    visible = ",".join(str(i) for i in gpus)
    return {
        "PATH": path,
        "HOME": home,
        "TMPDIR": tmp,
        "USER": "job",
        "LOGNAME": "job",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONHASHSEED": HASH_SEED,
        "GPUMARKET_INPUT_DIR": f"{root}/{INPUTS_DIR}",
        "GPUMARKET_OUTPUT_DIR": f"{root}/{OUTPUTS_DIR}",
        # cuBLAS is only deterministic with a fixed workspace; torch checks for this value.
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        # Index the GPUs the way nvidia-smi and NVML do, so assignment means one device.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": visible if cuda_visible is None else cuda_visible,
        "HIP_VISIBLE_DEVICES": visible,
    }


def job_env(
    job: PreparedJob,
    *,
    root: str,
    home: str,
    tmp: str,
    path: str,
    cuda_visible: str | None = None,
) -> dict[str, str]:
    """Environment for ``job`` whose work dir appears at ``root`` inside its runtime."""
    clash = sorted(RESERVED & set(job.env))
    if clash:
        raise SandboxError(f"job environment may not set {', '.join(clash)}")
    for key in job.env:
        if not key or "=" in key or "\0" in key or "\0" in job.env[key]:
            raise SandboxError(f"invalid environment variable name {key!r}")
    if job.seed < 0 or job.seed >= 2**64:
        raise SandboxError(f"seed out of range: {job.seed}")
    env = sandbox_env(job.gpus, root=root, home=home, tmp=tmp, path=path, cuda_visible=cuda_visible)
    env.update(job.env)  # none of them reserved (checked above)
    env["GPUMARKET_SEED"] = str(job.seed)
    return env
