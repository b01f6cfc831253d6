"""The canonical output of a job that failed by its own fault.

The market pays for time used: a job whose code fails (exits non-zero, runs out of memory,
runs past its own timeout) still cost its providers that time, and honest providers that
ran it agree on how it failed. So such a run is not only reported (``FailureReport``, for
the coordinator to show) but also committed and revealed like a result, its result being
this canonical outputs directory; providers that agree on it win the vote and are paid the
billed runtime (``contracts/README.md``, "Billing").

The format (one ``failure.json`` naming the exit class, nothing else: no logs, timestamps,
exit codes or partial outputs, so two providers that saw the same failure class commit the
same CID) is defined in :mod:`protocol.failure_output`, where requesters' tools read it.

Which failures qualify (:func:`exit_class_of`): a job's own timeout (only when the job got
its full timeout: a wall time cut short by this provider's limits or its commit deadline is
not the job's fault), an out-of-memory kill, a non-zero exit, and outputs refused for links
pointing outside them. Failures that depend on the provider (sandbox errors, foreign
signals, its process and output limits) and bad inputs are only reported.
"""

from __future__ import annotations

from pathlib import Path

from protocol.failure_output import FAILURE_FILE, ExitClass, failure_bytes
from protocol.files import remove_tree
from protocol.ids import Cid
from protocol.messages import FailureKind
from provider_node.runtimes.model import OUTPUTS_DIR
from provider_node.workdir import outputs_cid

__all__ = ["FAILURE_FILE", "ExitClass", "exit_class_of", "failure_bytes", "write_failure_output"]

_CLASS_OF = {
    FailureKind.TIMEOUT: ExitClass.TIMEOUT,
    FailureKind.OOM: ExitClass.OOM,
    FailureKind.NONZERO_EXIT: ExitClass.ERROR,
    FailureKind.OUTPUT_REFUSED: ExitClass.ERROR,
}


def exit_class_of(kind: FailureKind, *, full_timeout: bool = True) -> ExitClass | None:
    """The canonical class of a failure that is the job's own fault, else None.

    ``full_timeout``: the job ran with the whole timeout its spec asked for.
    """
    if kind is FailureKind.TIMEOUT and not full_timeout:
        return None
    return _CLASS_OF.get(kind)


def write_failure_output(run_dir: Path, exit_class: ExitClass) -> Cid:
    """Replace ``run_dir/outputs`` with the canonical failure output; return its CID.

    Blocking (filesystem work): run it in a worker thread from async code. Raises
    ``OSError`` when the job's outputs cannot be removed.
    """
    outputs = run_dir / OUTPUTS_DIR
    remove_tree(outputs)
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / FAILURE_FILE).write_bytes(failure_bytes(exit_class))
    left = sorted(p.name for p in outputs.iterdir())
    if left != [FAILURE_FILE]:
        raise OSError(f"{outputs} could not be cleared for the failure output: {left[:5]}")
    return outputs_cid(run_dir)
