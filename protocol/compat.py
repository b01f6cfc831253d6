"""GPU compatibility: what a spec's ``resources.requires`` asks and what an advert offers.

A spec may require a GPU vendor, GPU models (case-insensitive globs such as ``"*H100*"``),
a minimum compute capability (NVIDIA's ``major.minor``), a minimum driver version and a
minimum CUDA version. An advert's facts are flattened into a :class:`Platform`, and
:func:`unmet` names every requirement a platform fails, each saying what it has against
what is asked (``"driver 535.104 < 550.54"``), so ``job explain`` can say why per provider.

Versions compare numerically, part by part (``550.54.15`` > ``550.9``; missing parts are
0). ``min_cuda`` means the CUDA a job of the runtime gets: a torch job runs on the
provider's torch, so its CUDA build counts; a container brings its own CUDA runtime, so
the newest CUDA the provider's driver supports counts.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Vendor = Literal["nvidia", "amd", "apple"]
VENDORS: tuple[Vendor, ...] = ("nvidia", "amd", "apple")
BACKEND_VENDOR: dict[str, Vendor] = {"cuda": "nvidia", "rocm": "amd", "mps": "apple"}
"""The vendor of an advert's backend (a CPU-only provider has none)."""

MAX_MODEL_GLOBS = 16
MAX_GLOB_CHARS = 128
VERSION_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"
"""A dotted version: 1 to 4 numbers (``550``, ``12.4``, ``550.54.15``)."""
CAPABILITY_PATTERN = r"^[0-9]{1,2}\.[0-9]{1,2}$"
"""A compute capability, ``major.minor`` (``8.0``, ``9.0``, ``12.1``)."""
_GLOB = re.compile(r"^[A-Za-z0-9 ._()/*?+-]+$")
_VERSION = re.compile(VERSION_PATTERN)
_CAPABILITY = re.compile(CAPABILITY_PATTERN)


def check_version(text: str) -> str:
    """``text`` if it is a dotted version, else ValueError saying how to write one."""
    if not _VERSION.match(text):
        raise ValueError(f'{text!r} is not a version; write numbers and dots, e.g. "550.54"')
    return text


def check_capability(text: str) -> str:
    """``text`` if it is a compute capability, else ValueError."""
    if not _CAPABILITY.match(text):
        raise ValueError(f'{text!r} is not a compute capability; write major.minor, e.g. "8.0"')
    return text


def check_glob(text: str) -> str:
    """``text`` if it is a GPU model glob (letters, digits, spaces, ``*``, ``?``, ``._()/+-``)."""
    if not 0 < len(text) <= MAX_GLOB_CHARS or not _GLOB.match(text) or not text.strip():
        raise ValueError(
            f"{text!r} is not a GPU model pattern: 1 to {MAX_GLOB_CHARS} letters, digits, "
            "spaces, '*' or '?', e.g. \"*H100*\""
        )
    return text


def version_key(text: str | None) -> tuple[int, ...] | None:
    """A dotted version as comparable numbers (trailing zeros dropped), None if it is not
    one. Drivers sometimes carry a suffix (``"550.54.15-rc"``): the leading numbers count."""
    if text is None:
        return None
    found = re.match(r"^\s*([0-9]+(?:\.[0-9]+)*)", text)
    if found is None:
        return None
    parts = [int(p) for p in found.group(1).split(".")[:4]]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Requires:
    """A spec's ``resources.requires``, as the matcher uses it (hashable)."""

    vendor: Vendor | None = None
    gpu_model: tuple[str, ...] = ()
    min_compute_capability: str | None = None
    min_driver: str | None = None
    min_cuda: str | None = None

    def __bool__(self) -> bool:
        return any(
            (self.vendor, self.gpu_model, self.min_compute_capability, self.min_driver,
             self.min_cuda)
        )  # fmt: skip

    def describe(self) -> str:
        """What is asked, in one line (``vendor nvidia, driver >= 550.54``)."""
        parts = []
        if self.vendor:
            parts.append(f"vendor {self.vendor}")
        if self.gpu_model:
            parts.append("GPU model " + " or ".join(self.gpu_model))
        if self.min_compute_capability:
            parts.append(f"compute capability >= {self.min_compute_capability}")
        if self.min_driver:
            parts.append(f"driver >= {self.min_driver}")
        if self.min_cuda:
            parts.append(f"CUDA >= {self.min_cuda}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "vendor": self.vendor,
            "gpu_model": list(self.gpu_model),
            "min_compute_capability": self.min_compute_capability,
            "min_driver": self.min_driver,
            "min_cuda": self.min_cuda,
        }


@dataclass(frozen=True)
class Platform:
    """What an advert says about its GPUs and their software, flattened (hashable)."""

    vendor: Vendor | None
    models: tuple[str, ...]
    """Every distinct GPU model name of the provider (empty: no GPU)."""
    compute_capability: str | None = None
    """The lowest of its GPUs (None: not reported, or not NVIDIA)."""
    driver: str | None = None
    torch_cuda: str | None = None
    """The CUDA version the provider's torch was built with."""
    driver_cuda: str | None = None
    """The newest CUDA version the provider's driver supports."""


def lowest_capability(capabilities: Sequence[str | None]) -> str | None:
    """The lowest compute capability of a provider's GPUs; None if any is unknown."""
    keys = [version_key(c) for c in capabilities]
    if not keys or any(k is None for k in keys):
        return None
    return min(zip(keys, capabilities, strict=True), key=lambda kc: kc[0] or ())[1]


def _below(have: str | None, want: str) -> bool:
    """Whether version ``have`` is below ``want`` (unknown counts as below)."""
    have_key, want_key = version_key(have), version_key(want)
    return have_key is None or want_key is None or have_key < want_key


def unmet(requires: Requires, platform: Platform, runtime: str) -> list[str]:
    """Every requirement ``platform`` fails for a job of ``runtime``, each as
    ``"what it has vs what is asked"``; empty when it meets them all."""
    missing: list[str] = []
    if requires.vendor is not None and platform.vendor != requires.vendor:
        missing.append(f"vendor {platform.vendor or 'none (no GPU)'} is not {requires.vendor}")
    if requires.gpu_model:
        names = platform.models or ("no GPU",)
        fits = all(
            any(fnmatch.fnmatchcase(name.lower(), glob.lower()) for glob in requires.gpu_model)
            for name in names
        )
        if not platform.models or not fits:
            wanted = " or ".join(requires.gpu_model)
            missing.append(f"GPU {', '.join(names)} does not match {wanted}")
    wanted_cc = requires.min_compute_capability
    if wanted_cc is not None and _below(platform.compute_capability, wanted_cc):
        have = platform.compute_capability or "unknown"
        missing.append(f"compute capability {have} < {wanted_cc}")
    if requires.min_driver is not None and _below(platform.driver, requires.min_driver):
        missing.append(f"driver {platform.driver or 'unknown'} < {requires.min_driver}")
    if requires.min_cuda is not None:
        if runtime == "container":
            have_cuda, what = platform.driver_cuda, "CUDA supported by the driver"
        else:
            have_cuda, what = platform.torch_cuda, "CUDA of its torch"
        if platform.vendor != "nvidia" or _below(have_cuda, requires.min_cuda):
            missing.append(f"{what} {have_cuda or 'none'} < {requires.min_cuda}")
    return missing
