"""The canonical output of a job that failed by its own fault, as every side reads it.

The market pays for time used: a job whose code fails (exits non-zero, runs out of memory,
runs past its own timeout) still cost its providers that time, and honest providers that
ran it agree on how it failed. Such a run is committed and revealed like a result, its
result being this canonical outputs directory, so agreeing providers are paid the billed
runtime (``contracts/README.md``, "Billing"); the requester's tools recognise the result
by its CID and report the failure instead of handing over "outputs".

Format: ``outputs/`` holds exactly one file, ``failure.json``, whose bytes are

    {"exit_class":"<class>"}

with no whitespace and no trailing newline, ``<class>`` one of ``timeout``, ``oom``,
``error``. Nothing else goes in, so each class has exactly one CID.
"""

from __future__ import annotations

import enum
from functools import cache

from protocol.ids import Cid
from protocol.ipfs.cid import parse_cid
from protocol.ipfs.unixfs import directory_ref, hash_bytes

FAILURE_FILE = "failure.json"


class ExitClass(enum.StrEnum):
    TIMEOUT = "timeout"
    OOM = "oom"
    ERROR = "error"

    def describe(self) -> str:
        return {
            ExitClass.TIMEOUT: "ran past its timeout",
            ExitClass.OOM: "ran out of memory",
            ExitClass.ERROR: "exited with an error (or wrote outputs that were refused)",
        }[self]


def failure_bytes(exit_class: ExitClass) -> bytes:
    """The exact bytes of ``failure.json``."""
    return b'{"exit_class":"' + exit_class.value.encode() + b'"}'


@cache
def failure_output_cid(exit_class: ExitClass) -> Cid:
    """The CID of the canonical failure output of ``exit_class``."""
    file = hash_bytes(failure_bytes(exit_class))
    return directory_ref([(FAILURE_FILE, file)]).text


def failure_class_of(result_cid: str | None) -> ExitClass | None:
    """The exit class when ``result_cid`` is a canonical failure output, else None."""
    if not result_cid:
        return None
    try:
        digest = parse_cid(result_cid).digest
    except Exception:  # not a CID at all: certainly not a failure output
        return None
    for exit_class in ExitClass:
        if parse_cid(failure_output_cid(exit_class)).digest == digest:
            return exit_class
    return None
