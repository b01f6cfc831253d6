"""Files written so that a crash leaves the old content or the new, never half of one, and
trees removed whatever modes they were left with."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temporary file beside it (created mode 0600),
    fsync it, rename it into place and fsync the directory; the temporary file is removed
    if anything fails. Raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it, even where directories were made read-only
    (job inputs are; a job may leave its outputs so); links are not followed."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)
