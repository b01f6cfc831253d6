"""What the node serves from: disk for work directories and caches, the ports it
listens on, and the IPFS API it publishes through."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.p2p.addresses import unspecified
from provider_node.doctor.probes import PROBE_TIMEOUT_S
from provider_node.doctor.report import Check, CheckStatus

if TYPE_CHECKING:
    from provider_node.settings import ProviderSettings


def disk_needed(settings: ProviderSettings) -> tuple[int, int]:
    """Bytes the work directory must have free for one job (its inputs plus as much again
    of outputs) and for every job that may run or wait at once."""
    one = 2 * settings.max_input_bytes
    return one, one * (settings.max_concurrent_jobs + settings.max_queued_jobs)


def check_disk(
    work_dir: Path, free: int | None, needed: tuple[int, int], error: str | None = None
) -> Check:
    gib = 1 << 30
    if free is None:
        return Check(
            "disk",
            CheckStatus.FAIL,
            True,
            f"cannot use {work_dir}: {error}",
            f"create {work_dir} writable by the provider, or set PROVIDER_WORK_DIR",
        )
    one, every = needed
    found = (
        f"{free / gib:.1f} GiB free at {work_dir}; one job may need {one / gib:.1f} GiB, "
        f"all slots and queue {every / gib:.1f} GiB"
    )
    if free >= every:
        return Check("disk", CheckStatus.OK, True, found)
    fix = (
        "free space there, move PROVIDER_WORK_DIR, or lower PROVIDER_MAX_INPUT_BYTES, "
        "PROVIDER_MAX_CONCURRENT_JOBS or PROVIDER_MAX_QUEUED_JOBS"
    )
    return Check("disk", CheckStatus.FAIL if free < one else CheckStatus.WARN, True, found, fix)


def probe_disk(work_dir: Path) -> tuple[int | None, str | None]:
    """Free bytes where job directories go, after proving the directory is writable."""
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".doctor-"):
            pass
        return shutil.disk_usage(work_dir).free, None
    except OSError as exc:
        return None, str(exc)


def check_port(host: str, port: int, variable: str, error: str | None) -> Check:
    name = f"port {variable}"
    where = f"{host}:{port}" if port else f"{host} (a free port is picked)"
    if error is not None:
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            f"cannot listen on {where}: {error}",
            f"stop what holds the port (`ss -ltnp 'sport = :{port}'`) or set {variable}",
        )
    if host.startswith("127.") and variable in ("PROVIDER_P2P_PORT", "PROVIDER_LISTEN"):
        return Check(
            name,
            CheckStatus.WARN,
            False,
            f"{where} is bindable but loopback only: coordinators on other hosts cannot dial it",
            "set PROVIDER_LISTEN=/ip4/0.0.0.0/tcp/PORT, announce the address others reach "
            "(PROVIDER_ANNOUNCE) and open the port",
        )
    return Check(name, CheckStatus.OK, True, f"{where} is bindable")


def check_announce(listen: str, announce: tuple[str, ...]) -> Check:
    """Whether adverts carry an address others can dial."""
    if announce:
        return Check(
            "announce",
            CheckStatus.OK,
            False,
            f"adverts carry {', '.join(announce)} (listening on {listen})",
        )
    if unspecified(listen):
        return Check(
            "announce",
            CheckStatus.WARN,
            False,
            f"listening on {listen} (every interface) without an announce address: adverts "
            "carry addresses no coordinator on another host can dial",
            "set PROVIDER_ANNOUNCE (or `provider run --announce`) to the public or "
            "port-forwarded multiaddr, e.g. /ip4/203.0.113.7/tcp/4001",
        )
    return Check("announce", CheckStatus.OK, False, f"adverts carry the listen address {listen}")


def check_coordinator(addr: str, error: str | None) -> Check:
    """Whether the coordinator's multiaddr accepts a connection from this host."""
    peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else "?"
    if error is None:
        return Check("coordinator", CheckStatus.OK, False, f"{addr} accepts connections")
    return Check(
        "coordinator",
        CheckStatus.FAIL,
        False,
        f"coordinator {peer} does not answer at {addr}: {error}",
        "set PROVIDER_COORDINATOR_MULTIADDR to the address the coordinator announces (its "
        "ready file and start-up log give it); a coordinator behind a NAT must announce its "
        "public address (COORDINATOR_ANNOUNCE / `coordinator run --announce`), forward that "
        "port and open it in its firewall",
    )


def probe_port(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return str(exc)
    return None


def check_ipfs(api: str, version: str | None, error: str | None) -> Check:
    if version is None:
        return Check(
            "ipfs",
            CheckStatus.FAIL,
            True,
            f"the IPFS API at {api} does not answer: {error}",
            "start the IPFS daemon (`ipfs daemon`) or set PROVIDER_IPFS_API to its "
            "RPC address, e.g. http://127.0.0.1:5001",
        )
    return Check("ipfs", CheckStatus.OK, True, f"the IPFS API at {api} answers (version {version})")


def probe_ipfs(api: str) -> tuple[str | None, str | None]:
    import httpx

    try:
        response = httpx.post(f"{api.rstrip('/')}/api/v0/version", timeout=PROBE_TIMEOUT_S / 2)
        response.raise_for_status()
        return str(response.json().get("Version", "?"))[:64], None
    except (httpx.HTTPError, ValueError) as exc:
        return None, str(exc) or type(exc).__name__
