"""The NVIDIA driver's version and CUDA come from NVML when it answers, else from
nvidia-smi, else there is none (a host without an NVIDIA driver)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from provider_node.benchmark import devices


def fake_nvml(monkeypatch: pytest.MonkeyPatch, *, fails: bool = False) -> None:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fails:
            raise RuntimeError("NVML_ERROR_DRIVER_NOT_LOADED")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlSystemGetDriverVersion = lambda: b"580.159.01"  # type: ignore[attr-defined]
    module.nvmlSystemGetCudaDriverVersion = lambda: 13000  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)


def fake_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=driver_version" ]; then echo 550.54.15; exit 0; fi\n'
        "echo '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_nvml_answers_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_nvml(monkeypatch)
    fake_smi(monkeypatch, tmp_path)
    assert devices.nvidia_driver_version() == "580.159.01"
    assert devices.nvidia_driver_cuda() == "13.0"


def test_nvidia_smi_answers_when_nvml_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_nvml(monkeypatch, fails=True)
    fake_smi(monkeypatch, tmp_path)
    assert devices.nvidia_driver_version() == "550.54.15"
    assert devices.nvidia_driver_cuda() == "12.4"


def test_no_driver_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert devices.nvidia_driver_version() is None
    assert devices.nvidia_driver_cuda() is None
