"""Start a torch job's entrypoint with every seed set and deterministic algorithms on.

Runs inside the sandbox as ``python -s launcher.py SCRIPT [ARGS...]`` and imports nothing
from gpumarket: only the standard library, torch and (if present) numpy.
"""

from __future__ import annotations

import os
import random
import runpy
import sys


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed % 2**32)
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: launcher.py SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    script = os.path.abspath(argv[1])
    _seed_everything(int(os.environ.get("GPUMARKET_SEED", "0")))
    sys.argv = [script, *argv[2:]]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
