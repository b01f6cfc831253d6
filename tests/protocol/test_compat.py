"""GPU compatibility: the spec's ``resources.requires``, the advert's facts, and the verdicts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.clock import ManualClock
from protocol.compat import Platform, Requires, lowest_capability, unmet, version_key
from protocol.errors import SignatureError, SpecError
from protocol.messages import Advert, Fingerprint, GpuInfo
from protocol.signing import Verifier, encode_signed, sign_message
from protocol.spec import JobSpec
from protocol.spec_io import parse_spec
from tests.protocol.factories import NOW, PROVIDER, advert

BASE = """
name: needs-a-gpu
runtime: {kind: torch, entrypoint: main.py}
price: {max_per_provider: "1"}
"""

H100 = Platform(
    vendor="nvidia",
    models=("NVIDIA H100 80GB HBM3",),
    compute_capability="9.0",
    driver="550.54.15",
    torch_cuda="12.4",
    driver_cuda="12.6",
)


def spec(resources: str) -> JobSpec:
    return parse_spec(BASE + f"resources: {resources}\n")


def test_a_spec_reads_requires_cpus_and_memory() -> None:
    s = spec(
        '{gpus: 1, cpus: 4, memory_gb: 8, requires: {vendor: nvidia, gpu_model: "*H100*", '
        'min_compute_capability: "8.0", min_driver: "550.54", min_cuda: "12.4"}}'
    )
    assert s.resources.cpus == 4.0 and s.resources.memory_gb == 8.0
    assert s.resources.requires is not None
    assert s.resources.requires.as_requires() == Requires(
        vendor="nvidia",
        gpu_model=("*H100*",),
        min_compute_capability="8.0",
        min_driver="550.54",
        min_cuda="12.4",
    )
    assert spec("{gpus: 1}").resources.cpus == 2.0  # the default
    # A driver floor alone means an NVIDIA driver.
    alone = spec('{gpus: 1, requires: {min_driver: "550"}}').resources.requires
    assert alone is not None
    assert alone.as_requires() == Requires(vendor="nvidia", min_driver="550")


@pytest.mark.parametrize(
    ("resources", "path", "says"),
    [
        ('{gpus: 0, requires: {min_driver: "550"}}', "resources.requires", "needs gpus >= 1"),
        ("{gpus: 1, requires: {min_driver: 550.54}}", "resources.requires.min_driver", "quotes"),
        ('{gpus: 1, requires: {min_driver: "r550"}}', "resources.requires.min_driver", "version"),
        (
            '{gpus: 1, requires: {min_compute_capability: "8"}}',
            "resources.requires.min_compute_capability",
            "major.minor",
        ),
        (
            '{gpus: 1, requires: {vendor: amd, min_cuda: "12.4"}}',
            "resources.requires.min_cuda",
            "NVIDIA notion; vendor is amd",
        ),
        ("{gpus: 1, requires: {vendor: intel}}", "resources.requires.vendor", "nvidia"),
        ("{gpus: 1, requires: {gpu_model: ['$(id)']}}", "resources.requires.gpu_model.0", "*H100*"),
        ("{gpus: 1, requires: {min_drivers: '1'}}", "resources.requires.min_drivers", "min_driver"),
        ("{gpus: 1, cpus: 0}", "resources.cpus", "greater than or equal to 0.1"),
        ("{gpus: 1, cpus: 1000}", "resources.cpus", "less than or equal to 256"),
        ("{gpus: 1, memory_gb: -1}", "resources.memory_gb", "greater than 0"),
    ],
)
def test_bad_requirements_name_the_field_and_the_fix(resources: str, path: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(resources)
    assert err.value.path == path
    assert says in str(err.value)


def test_versions_compare_part_by_part() -> None:
    assert version_key("550.54.15") > version_key("550.9")  # type: ignore[operator]
    assert version_key("12.10") > version_key("12.9")  # type: ignore[operator]
    assert version_key("12.0") == version_key("12")
    assert version_key("550.54-rc1") == (550, 54)
    assert version_key("macOS 14.2") is None and version_key(None) is None
    assert lowest_capability(["9.0", "8.6", "12.0"]) == "8.6"
    assert lowest_capability(["9.0", None]) is None


def test_unmet_names_what_the_platform_has_against_what_is_asked() -> None:
    assert unmet(Requires(vendor="nvidia", min_driver="550.54"), H100, "torch") == []
    old = Platform("nvidia", ("NVIDIA A10",), "8.6", "535.104.05", "12.1", "12.2")
    asked = Requires(
        vendor="nvidia",
        gpu_model=("*H100*", "*a100*"),
        min_compute_capability="8.9",
        min_driver="550",
        min_cuda="12.4",
    )
    assert unmet(asked, old, "torch") == [
        "GPU NVIDIA A10 does not match *H100* or *a100*",
        "compute capability 8.6 < 8.9",
        "driver 535.104.05 < 550",
        "CUDA of its torch 12.1 < 12.4",
    ]
    # A container brings its own CUDA runtime: the driver's CUDA is what counts.
    assert unmet(Requires(min_cuda="12.5"), H100, "torch") == ["CUDA of its torch 12.4 < 12.5"]
    assert unmet(Requires(min_cuda="12.5"), H100, "container") == []
    # Globs are case-insensitive and anchored: "*A10" is not an A100.
    assert unmet(Requires(gpu_model=("*a10",)), old, "torch") == []
    a100 = Platform("nvidia", ("NVIDIA A100-SXM4-80GB",), "8.0", "550.54", "12.4", "12.4")
    assert unmet(Requires(gpu_model=("*a10",)), a100, "torch") != []
    amd = Platform("amd", ("AMD Instinct MI300X",), None, "6.3.6", None, None)
    assert unmet(Requires(vendor="nvidia"), amd, "torch") == ["vendor amd is not nvidia"]
    unknown = Platform("nvidia", ("NVIDIA H100",))  # an advert without the new facts
    assert unmet(Requires(min_compute_capability="8.0", min_driver="1"), unknown, "torch") == [
        "compute capability unknown < 8.0",
        "driver unknown < 1",
    ]
    cpu = Platform(None, ())
    assert unmet(Requires(vendor="nvidia"), cpu, "torch") == ["vendor none (no GPU) is not nvidia"]


def test_adverts_without_the_new_facts_encode_as_they_always_did() -> None:
    """An advert from a provider that does not know ``compute_capability`` or ``driver_cuda``
    encodes without those keys, so its signature checks under this code."""
    plain = advert(expires_at=NOW + 30)
    data = encode_signed(sign_message(plain, PROVIDER))
    assert b"compute_capability" not in data and b"driver_cuda" not in data
    verifier = Verifier(ManualClock(NOW))
    assert verifier.open_bytes(data) == plain
    facts = advert(
        seq=2,
        expires_at=NOW + 30,
        gpus=(GpuInfo(name="NVIDIA H100", memory_bytes=80 << 30, compute_capability="9.0"),),
        fingerprint=Fingerprint(
            backend="cuda",
            gpu_model="H100",
            driver="580.159",
            cuda="13.0",
            torch="2.11",
            driver_cuda="13.0",
        ),
    )
    signed = encode_signed(sign_message(facts, PROVIDER))
    back = verifier.open_bytes(signed, Advert)
    assert back == facts
    assert back.gpus[0].compute_capability == "9.0"
    assert back.fingerprint.driver_cuda == "13.0"
    # The facts are signed like the rest: changing one breaks the signature.
    forged = signed.replace(b'"compute_capability":"9.0"', b'"compute_capability":"9.9"')
    assert forged != signed
    with pytest.raises(SignatureError):
        Verifier(ManualClock(NOW)).open_bytes(forged)


def test_an_advert_announces_its_queue_only_when_it_has_one() -> None:
    """``max_queued`` is left out while unset (older adverts verify as signed), signed like
    the rest when set, and bounded."""
    verifier = Verifier(ManualClock(NOW))
    plain = encode_signed(sign_message(advert(expires_at=NOW + 30), PROVIDER))
    assert b"max_queued" not in plain
    queued = advert(seq=2, expires_at=NOW + 30, max_queued=4)
    signed = encode_signed(sign_message(queued, PROVIDER))
    assert b'"max_queued":4' in signed
    assert verifier.open_bytes(signed, Advert).max_queued == 4
    with pytest.raises(ValidationError):
        advert(max_queued=65)
