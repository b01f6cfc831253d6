"""``gpumarket provider doctor``: check, print, and exit 1 when a must-have fails."""

from __future__ import annotations

import json
import os

from protocol.errors import GpuMarketError
from provider_node.doctor.report import Check, CheckStatus, Report, report_lines
from provider_node.doctor.runner import HostProbes, host_checks, run_doctor


def settings_failure(exc: GpuMarketError) -> Check:
    return Check(
        "settings",
        CheckStatus.FAIL,
        True,
        str(exc),
        "set the named PROVIDER_* variables (see deploy/provider.env)",
    )


def doctor_command(as_json: bool, runtime: str | None = None) -> int:
    """What ``gpumarket provider doctor`` does: check, print, and return the exit status
    (1 when a must-have check fails)."""
    from provider_node.settings import load_settings

    try:
        settings = load_settings(runtime=runtime)
    except GpuMarketError as exc:
        # Without settings the host can still be examined.
        cpu_only = os.environ.get("PROVIDER_CPU_ONLY", "").lower() in ("1", "true", "yes")
        checks = host_checks(HostProbes(), runtime=runtime or "bwrap", cpu_only=cpu_only)
        report = Report((settings_failure(exc), *checks))
    else:
        report = run_doctor(settings)
    if as_json:
        print(json.dumps(report.view(), sort_keys=True))
    else:
        for line in report_lines(report):
            print(line)
    return 1 if report.blocking else 0
