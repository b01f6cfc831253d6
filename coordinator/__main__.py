"""``python -m coordinator run``: the coordinator CLI without the ``gpumarket`` entry point."""

from coordinator.cli import app

app(prog_name="coordinator")
