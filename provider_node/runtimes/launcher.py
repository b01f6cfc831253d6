"""Start a torch job's entrypoint with every seed set and deterministic algorithms on.

Runs inside the sandbox and imports nothing from gpumarket: only the standard library,
torch and (if present) numpy. Two ways in:

``python -s launcher.py SCRIPT [ARGS...]``
    cold: the job's environment and arguments are given at exec.
``python -s launcher.py --warm``
    warm: import torch (and initialise CUDA when devices are visible), write
    :data:`READY` to stdout, then read the job's hand-off from stdin, up to EOF, as one JSON
    object ``{"argv": [SCRIPT, ARGS...], "env": {...}, "started_with": [NAME, ...],
    "fsize": BYTES}``. ``env`` replaces the variables the sandbox was started with (named in
    ``started_with``) and ``fsize`` lowers the file size limit, all before the job's first
    line; from there on both ways run the same code.
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import runpy
import sys

READY = b"\ngpumarket-warm-ready\n"
"""Written once the warm interpreter waits for its hand-off; nothing of the job runs before."""
MAX_HANDOFF_BYTES = 1 << 20
WARM_FLAG = "--warm"


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


def _run(script: str, args: list[str]) -> int:
    script = os.path.abspath(script)
    _seed_everything(int(os.environ.get("GPUMARKET_SEED", "0")))
    # What the imports built (torch's is large) leaves the cyclic collector's view: the
    # job's own objects are collected and finalized as ever, but the interpreter's exit no
    # longer walks torch (about a second per job on a small CPU).
    gc.freeze()
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    return 0


def _warm_up() -> None:
    """What a cold start does before the job's first line, done ahead of the job."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
    import torch

    try:  # what torch.use_deterministic_algorithms imports (seconds of sympy), state aside
        import torch._inductor.config
    except ImportError:
        pass
    if os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("HIP_VISIBLE_DEVICES"):
        # Creates the context on the default device; fails here, not in the job, when the
        # devices bound at start cannot be used (the provider then starts the job cold).
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _hand_off() -> list[str] | None:
    """Wait for the job; apply its limits and environment. None: the slot was dropped."""
    data = sys.stdin.buffer.read(MAX_HANDOFF_BYTES + 1)
    if not data:
        return None
    if len(data) > MAX_HANDOFF_BYTES:
        raise SystemExit(f"hand-off larger than {MAX_HANDOFF_BYTES} bytes")
    message = json.loads(data)
    argv, env, fsize = message["argv"], message["env"], int(message["fsize"])
    if not argv or not all(isinstance(a, str) for a in argv):
        raise SystemExit("hand-off without a script")
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    # What the sandbox itself added (PWD) and what the imports set (torch's cache dir)
    # stays, as it would after a cold start; every name the provider set is replaced.
    kept = {k: v for k, v in os.environ.items() if k not in set(message["started_with"])}
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.environ.update(kept)
    # What a cold start would show as the interpreter's own command line.
    sys.orig_argv = [*sys.orig_argv[:-1], *argv]
    return [str(a) for a in argv]


def main(argv: list[str]) -> int:
    if argv[1:] == [WARM_FLAG]:
        _warm_up()
        os.write(1, READY)
        job = _hand_off()
        if job is None:
            return 0
        return _run(job[0], job[1:])
    if len(argv) < 2:
        print("usage: launcher.py SCRIPT [ARGS...] | launcher.py --warm", file=sys.stderr)
        return 2
    return _run(argv[1], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
