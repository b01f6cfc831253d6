"""The wallet's job windows and escrow: pure arithmetic, checked against the market's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.models import MAX_JOB_DURATION_S, CompareMode, JobRequest
from protocol.errors import SpecError
from protocol.ids import Address, Cid, Wei, to_wei
from protocol.spec import JobSpec, Verification
from protocol.spec_fields import MAX_TIMEOUT_S
from protocol.spec_io import load_spec
from wallet import jobs
from wallet.windows import (
    ASSIGN_WINDOW_S,
    COMMIT_MARGIN_S,
    MAX_QUEUE_WAIT_S,
    JobWindows,
    job_windows,
    queue_wait,
    runs_in_a_row,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = 1_700_000_000
SPEC_CID = Cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
COORDINATOR = Address("0x" + "c0" * 20)


def creation_errors(now: int, w: JobWindows) -> list[str]:
    """The market's creation checks on a job's times (contracts/README.md, "Terms")."""
    errors = []
    if not 0 < w.timeout_ms <= w.commit_window * 1000:
        errors.append("0 < timeoutMs <= commitWindow * 1000")
    if not now < w.assign_deadline <= w.spare_deadline:
        errors.append("now < assignDeadline <= spareDeadline")
    if w.commit_window <= 0 or w.reveal_window <= 0:
        errors.append("windows > 0")
    end_of_windows = w.spare_deadline + w.commit_window + w.reveal_window
    if not end_of_windows <= w.settle_deadline <= now + MAX_JOB_DURATION_S:
        errors.append("spare + commit + reveal <= settle <= now + MAX_JOB_DURATION")
    if any(v >= 2**32 for v in (w.assign_deadline, w.spare_deadline, w.settle_deadline)):
        errors.append("deadlines fit uint32")
    return errors


@pytest.mark.parametrize("redundancy", [1, 2, 3, 5])
@pytest.mark.parametrize("timeout_s", [1, 120, 3600, MAX_TIMEOUT_S])
def test_windows_pass_the_markets_creation_checks(timeout_s: int, redundancy: int) -> None:
    w = job_windows(NOW, timeout_s, redundancy)
    assert creation_errors(NOW, w) == []
    assert w.timeout_ms == timeout_s * 1000
    assert w.commit_window == timeout_s + COMMIT_MARGIN_S
    assert w.assign_deadline == NOW + ASSIGN_WINDOW_S


def test_redundancy_one_leaves_room_for_primary_checker_and_tie_breaker() -> None:
    w = job_windows(NOW, 600, 1)
    assert runs_in_a_row(1) == 3
    # The primary commits by assign + cw; a checker seated then commits by assign + 2 cw,
    # a tie-breaker seated then is still inside the spare deadline.
    primary_done = w.assign_deadline + w.commit_window
    checker_done = primary_done + w.commit_window
    assert w.spare_deadline == checker_done
    tie_breaker_done = w.spare_deadline + w.commit_window
    assert tie_breaker_done + w.reveal_window <= w.settle_deadline


def test_fixed_redundancy_leaves_room_for_a_tie_breaker_after_the_primaries() -> None:
    w = job_windows(NOW, 600, 2)
    assert runs_in_a_row(2) == 2
    assert w.spare_deadline == w.assign_deadline + w.commit_window
    assert w.spare_deadline + w.commit_window + w.reveal_window <= w.settle_deadline
    # Sized tighter than redundancy 1: providers lock stake for less time.
    assert w.settle_deadline < job_windows(NOW, 600, 1).settle_deadline


def test_a_timeout_past_the_markets_duration_limit_names_the_longest_allowed() -> None:
    with pytest.raises(SpecError, match=r"timeout: .*90-day limit .* use at most (\d+)s") as info:
        job_windows(NOW, 40 * 86400, 1)
    longest = int(str(info.value).rsplit("at most ", 1)[1].rstrip("s"))
    assert creation_errors(NOW, job_windows(NOW, longest, 1)) == []
    with pytest.raises(SpecError):
        job_windows(NOW, longest + 1, 1)


def test_a_timeout_of_zero_is_refused() -> None:
    with pytest.raises(SpecError, match="timeout: must be positive"):
        job_windows(NOW, 0, 2)


def spec(redundancy: int | str, timeout: int = 120) -> JobSpec:
    base = load_spec(EXAMPLES / "matmul" / "job.yaml")
    return base.model_copy(
        update={
            "verification": Verification.model_validate(
                {"redundancy": redundancy, "compare": "exact"}
            ),
            "timeout": timeout,
        }
    )


@pytest.mark.parametrize(
    ("redundancy", "on_chain", "seats"), [("auto", 1, 3), (1, 1, 3), (2, 2, 4), (5, 5, 7)]
)
def test_escrow_covers_every_seat_and_the_fee(
    redundancy: int | str, on_chain: int, seats: int
) -> None:
    fee = to_wei("0.10")
    s = spec(redundancy)
    assert jobs.on_chain_redundancy(s) == on_chain
    assert jobs.job_escrow(s, fee) == seats * to_wei("2.50") + fee


def test_job_request_carries_the_spec_its_windows_and_escrow() -> None:
    fee = Wei(to_wei("0.25"))
    s = spec("auto", timeout=300)
    request = jobs.job_request(s, SPEC_CID, COORDINATOR, fee, NOW)
    assert isinstance(request, JobRequest)
    assert (request.redundancy, request.mode, request.coordinator) == (
        1,
        CompareMode.EXACT,
        COORDINATOR,
    )
    assert request.price_cap == to_wei("2.50") and request.fee == fee
    assert request.escrow == jobs.job_escrow(s, fee) == 3 * to_wei("2.50") + fee
    w = job_windows(NOW, 300, 1)
    assert (
        request.timeout_ms,
        request.assign_deadline,
        request.commit_window,
        request.reveal_window,
        request.spare_deadline,
        request.settle_deadline,
    ) == (
        w.timeout_ms,
        w.assign_deadline,
        w.commit_window,
        w.reveal_window,
        w.spare_deadline,
        w.settle_deadline,
    )
    assert len(request.spec_digest) == 32


def test_disputed_is_not_terminal_but_every_end_state_is() -> None:
    assert "disputed" not in jobs.TERMINAL
    assert jobs.TERMINAL == {"settled", "finalized", "failed", "reclaimed", "cancelled"}


def test_the_queue_ahead_waits_whole_rounds_of_the_timeout_within_a_bound() -> None:
    assert queue_wait(0, 5, 120) == 0  # an idle market: the plain assign window
    assert queue_wait(1, 5, 120) == 120
    assert queue_wait(10, 5, 120) == 240
    assert queue_wait(11, 5, 120) == 360
    assert queue_wait(7, 0, 120) == 7 * 120  # no slot known: one at a time
    assert queue_wait(10**6, 5, 3600) == MAX_QUEUE_WAIT_S


@pytest.mark.parametrize("redundancy", [1, 2])
@pytest.mark.parametrize("timeout_s", [1, 120, MAX_TIMEOUT_S])
def test_a_queue_wait_moves_every_deadline_and_still_passes_the_markets_checks(
    timeout_s: int, redundancy: int
) -> None:
    plain = job_windows(NOW, timeout_s, redundancy)
    w = job_windows(NOW, timeout_s, redundancy, queue_wait_s=MAX_QUEUE_WAIT_S)
    assert creation_errors(NOW, w) == []
    assert w.assign_deadline == NOW + ASSIGN_WINDOW_S + MAX_QUEUE_WAIT_S
    shift = w.assign_deadline - plain.assign_deadline
    assert (w.spare_deadline, w.settle_deadline) == (
        plain.spare_deadline + shift,
        plain.settle_deadline + shift,
    )
    assert w.commit_window == plain.commit_window
