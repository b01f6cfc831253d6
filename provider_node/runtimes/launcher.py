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
INDUCTOR_CONFIG = "torch._inductor.config"


class _DeterministicInductor:
    """A meta path finder that sets ``deterministic`` on torch's inductor config as that
    module is imported: what ``torch.use_deterministic_algorithms(True)`` does by importing
    it at once, which costs about a second of CPU (sympy, mostly) on every job start, also
    for the jobs that never compile anything."""

    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != INDUCTOR_CONFIG:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_set(module: object) -> None:
            exec_module(module)
            sys.modules[name].deterministic = True  # type: ignore[attr-defined]

        loader.exec_module = exec_then_set  # this spec's own loader
        return spec


def _deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True)``, with the inductor's part deferred
    until something imports it. That function (torch 2.x) sets exactly these two: the C++
    switch and ``torch._inductor.config.deterministic``; a test reads both in a job."""
    import torch

    switch = getattr(torch._C, "_set_deterministic_algorithms", None)
    if switch is None:  # a torch without the switch this relies on: do it torch's way
        torch.use_deterministic_algorithms(True)
        return
    switch(True, warn_only=False)
    config = sys.modules.get(INDUCTOR_CONFIG)
    if config is not None:
        config.deterministic = True  # type: ignore[attr-defined]
    elif not any(isinstance(f, _DeterministicInductor) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeterministicInductor())  # type: ignore[arg-type]


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
    _deterministic_algorithms()
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
