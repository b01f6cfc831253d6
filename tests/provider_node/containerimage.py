"""A small OCI image for container-runtime tests, made from this host's own Python.

There is no image registry to pull from, so the image is assembled here: the host's
``python3`` interpreter, the shared libraries it and its extension modules load, its
standard library and ``/bin/sh``, packed into a root filesystem tarball and imported into
the engine (``podman import``). Built once per test session; the digest the engine gives
it is how jobs name it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

_SKIPPED_STDLIB = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
    "dist-packages",
}  # fmt: skip
_LDD_PATH = re.compile(r"(/\S+) \(0x")


def _shared_libraries(binaries: Sequence[Path]) -> set[Path]:
    found: set[Path] = set()
    for start in range(0, len(binaries), 64):
        done = subprocess.run(
            ["ldd", *map(str, binaries[start : start + 64])],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        found.update(Path(m[1]) for m in _LDD_PATH.finditer(done.stdout))
    return found


def _entry(tar: tarfile.TarFile, path: Path) -> None:
    info = tar.gettarinfo(str(path), arcname=str(path).lstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir():  # every user of the image passes through (the host's /root is 0700)
        info.mode |= 0o755
    if info.isreg():
        with path.open("rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)


def _add(tar: tarfile.TarFile, path: Path, seen: set[Path]) -> None:
    """Add ``path`` at its own place, with every directory and link on the way to it."""
    current = Path("/")
    parts = path.parts[1:]
    for i, part in enumerate(parts):
        current = current / part
        if current not in seen:
            seen.add(current)
            _entry(tar, current)
        if current.is_symlink():  # continue from where the link points
            target = current.parent / os.readlink(current)
            _add(tar, Path(os.path.normpath(target.joinpath(*parts[i + 1 :]))), seen)
            return


def _stdlib_files(stdlib: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(stdlib):
        if Path(root) == stdlib:
            dirs[:] = [d for d in dirs if d not in _SKIPPED_STDLIB and not d.startswith("config-")]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for file in files:
            yield Path(root) / file


def write_python_rootfs(tarball: Path) -> None:
    """A root filesystem holding this host's Python (no site-packages) and ``/bin/sh``."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = Path(sys.base_prefix) / "bin" / f"python{version}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = sorted(p for p in (stdlib / "lib-dynload").glob("*.so") if "tkinter" not in p.name)
    libraries = _shared_libraries([python, Path("/bin/sh"), *dynload])
    seen: set[Path] = set()
    with tarfile.open(tarball, "w") as tar:
        for directory in ("tmp", "proc", "sys", "dev", "etc", "home"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
            seen.add(Path("/") / directory)
        extra = [Path(sys.base_prefix) / "bin" / "python3", Path("/bin/sh")]
        for path in [python, *extra, *sorted(libraries), *_stdlib_files(stdlib)]:
            if path.exists() and "tkinter" not in path.name:
                _add(tar, path, seen)
        _add(tar, Path("/usr/local/bin"), seen)
        if Path("/usr/local/bin/python3") not in seen:  # the name jobs call it by
            info = tarfile.TarInfo("usr/local/bin/python3")
            info.type, info.linkname = tarfile.SYMTYPE, str(python.resolve())
            tar.addfile(info)


def import_image(
    engine: Sequence[str], tarball: Path, name: str, env: dict[str, str] | None = None
) -> str:
    """Import ``tarball`` as ``name`` and return its digest-pinned reference."""
    variables = {"PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})}
    argv = [*engine, "import"]
    for key, value in variables.items():
        argv += ["--change", f"ENV {key}={value}"]
    argv += [str(tarball), f"{name}:latest"]
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    digest = subprocess.run(
        [*engine, "image", "inspect", "--format", "{{.Digest}}", f"{name}:latest"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return f"{name}@{digest}"
