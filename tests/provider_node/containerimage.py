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
from importlib import metadata
from pathlib import Path, PurePath

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
    # Libraries a package ships are added with it, at its place in the image.
    return {path for path in found if "-packages" not in str(path)}


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


def _distribution_files(names: Sequence[str]) -> list[tuple[Path, PurePath]]:
    """The installed files of distributions ``names`` and of what they require: (where the
    file is here, its path relative to site-packages)."""
    pending, done = list(names), set()
    files: list[tuple[Path, PurePath]] = []
    while pending:
        dist = metadata.distribution(pending.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in done:
            continue
        done.add(key)
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                pending.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file)))
            if ".." not in file.parts and source.is_file() and not source.is_symlink():
                files.append((source, PurePath(file)))
    return files


def write_python_rootfs(tarball: Path, packages: Sequence[str] = ()) -> None:
    """A root filesystem holding this host's Python, ``/bin/sh`` and ``packages`` (installed
    distributions of this interpreter, with their requirements) in its site-packages."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = Path(sys.base_prefix) / "bin" / f"python{version}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = sorted(p for p in (stdlib / "lib-dynload").glob("*.so") if "tkinter" not in p.name)
    installed = _distribution_files(packages)
    extensions = [source for source, _ in installed if ".so" in source.suffixes]
    libraries = _shared_libraries([python, Path("/bin/sh"), *dynload, *extensions])
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
        site = Path(sysconfig.get_paths(vars={"base": sys.base_prefix})["purelib"])
        for source, relative in installed:
            info = tar.gettarinfo(str(source), arcname=str(site / relative).lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with source.open("rb") as handle:
                tar.addfile(info, handle)
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


def derive_image(
    engine: Sequence[str], base: str, name: str, env: dict[str, str], work: Path
) -> str:
    """``base`` with ``env`` added to its config (no new layer, nothing pulled); returns the
    new image's digest-pinned reference."""
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"FROM {base}", *(f"ENV {key}={value}" for key, value in env.items())]
    (work / "Containerfile").write_text("\n".join(lines) + "\n")
    build = [*engine, "build", "--pull=never", "--quiet", "--tag", f"{name}:latest", str(work)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    digest = subprocess.run(
        [*engine, "image", "inspect", "--format", "{{.Digest}}", f"{name}:latest"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return f"{name}@{digest}"
