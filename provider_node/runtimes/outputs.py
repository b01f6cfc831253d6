"""Checks on what a job left in ``outputs/``: size, entry count, and nothing that escapes.

A job controls every byte under its outputs directory, so the provider reads it without
following links: a symlink may only point, relatively, at something inside outputs, and
device nodes, FIFOs and sockets are refused outright.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import SandboxError
from provider_node.runtimes.model import PreparedJob

DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class OutputScan:
    """Totals of an outputs tree; ``problem`` is set when the tree must be refused."""

    total_bytes: int
    entries: int
    problem: str | None = None
    too_large: bool = False


def _link_escapes(root: Path, link: Path) -> bool:
    target = os.readlink(link)
    if os.path.isabs(target):
        return True  # absolute paths mean something else inside the sandbox than here
    resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
    return os.path.commonpath([str(root), resolved]) != str(root)


def scan_outputs(root: Path, max_bytes: int, max_entries: int = DEFAULT_MAX_ENTRIES) -> OutputScan:
    """Walk ``root`` without following links; stop early once a bound is passed."""
    root = Path(os.path.abspath(root))
    try:
        root_stat = root.lstat()
    except FileNotFoundError:
        return OutputScan(0, 0, "outputs directory is missing")
    if not stat.S_ISDIR(root_stat.st_mode):
        return OutputScan(0, 0, "outputs is not a directory")
    total = entries = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            listing = list(os.scandir(directory))
        except OSError as exc:
            return OutputScan(total, entries, f"cannot read {directory}: {exc.strerror}")
        for entry in listing:
            entries += 1
            if entries > max_entries:
                return OutputScan(total, entries, f"more than {max_entries} entries", True)
            st = entry.stat(follow_symlinks=False)
            rel = os.path.relpath(entry.path, root)
            if stat.S_ISLNK(st.st_mode):
                if _link_escapes(root, Path(entry.path)):
                    return OutputScan(total, entries, f"symlink {rel} points outside outputs")
            elif stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > max_bytes:
                    return OutputScan(total, entries, f"outputs exceed {max_bytes} bytes", True)
            else:
                return OutputScan(total, entries, f"special file {rel} in outputs")
    return OutputScan(total, entries)


def check_work_dir(job: PreparedJob) -> None:
    """Refuse a work dir whose inputs or outputs are missing, are links, or start non-empty."""
    for path in (job.work_dir, job.inputs_dir, job.outputs_dir):
        if path.is_symlink() or not path.is_dir():
            raise SandboxError(f"{path} must be a directory (not a link)")
    if any(job.outputs_dir.iterdir()):
        raise SandboxError(f"{job.outputs_dir} must be empty before a run")
