"""``python -m coordinator run``: the coordinator CLI without the ``gpumarket`` entry point."""

from coordinator.cli import app
from protocol.encoding import restore_recursion_limit

restore_recursion_limit()  # after every import: see protocol.encoding.SAFE_RECURSION_LIMIT
app(prog_name="coordinator")
