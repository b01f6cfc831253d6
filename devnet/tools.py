"""Where the pinned external tools live (npm's node_modules next to the project)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from protocol.errors import DevnetError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def node_modules() -> Path:
    return Path(os.environ.get("GPUMARKET_NODE_MODULES", PROJECT_ROOT / "node_modules"))


def npm_tool(name: str) -> Path:
    """The native binary behind ``node_modules/.bin/NAME`` (never a Node wrapper).

    Killing a wrapper would orphan the real process, so the symlink is resolved.
    """
    link = node_modules() / ".bin" / name
    if not link.exists():
        raise DevnetError(
            f"{name} is not installed (looked for {link}); run `make bootstrap` "
            "or `npm install` in the project root"
        )
    return link.resolve()


def kubo_binary() -> Path | None:
    """A Kubo ``ipfs`` binary from GPUMARKET_IPFS_BIN or PATH, if there is one."""
    explicit = os.environ.get("GPUMARKET_IPFS_BIN")
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise DevnetError(f"GPUMARKET_IPFS_BIN points at {path}, which does not exist")
        return path
    found = shutil.which("ipfs")
    return Path(found) if found else None
