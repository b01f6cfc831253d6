// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./Fixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";

contract JobMarketTest is Fixture {
    bytes32 constant GOOD = keccak256("good result");
    bytes32 constant BAD = keccak256("bad result");
    uint64 constant PRICE = 2_000_000;

    function _totalOwed() internal view returns (uint256 sum) {
        sum = _owed(requester) + _owed(coordinator);
        for (uint256 i; i < providerAddrs.length; ++i) {
            sum += _owed(providerAddrs[i]);
        }
    }

    function _totalStake() internal view returns (uint256 sum) {
        for (uint256 i; i < providerAddrs.length; ++i) {
            (,, uint64 stake_,,,,,, uint64 unbonding,) = market.providerInfo(providerAddrs[i]);
            sum += stake_ + unbonding;
        }
    }

    function _checkConservation(uint256 openEscrow) internal view {
        assertEq(
            token.balanceOf(address(market)),
            openEscrow + _totalStake() + _totalOwed(),
            "market balance == escrows + stakes + owed"
        );
    }

    function test_createEscrowsWithPermitInOneCall() public {
        uint256 before = token.balanceOf(requester);
        bytes32 jobId = _create(2, 0, CAP, FEE);
        assertEq(jobId, keccak256(abi.encode(requester, uint256(0))), "job id");
        assertEq(jobId, market.jobIdFor(requester, 0), "jobIdFor");
        uint256 escrow = 3 * uint256(CAP) + FEE;
        assertEq(before - token.balanceOf(requester), escrow, "escrow pulled");
        (uint8 status, uint8 assigned, bytes32 commitment) = market.getJob(jobId);
        assertEq(status, 1, "open");
        assertEq(assigned, 0, "nobody assigned");
        assertEq(
            commitment,
            market.commitmentOf(termsOf[jobId], new address[](0), new uint64[](0)),
            "commitment to the terms"
        );
        _checkConservation(escrow);
        bytes32 second = _create(1, 0, CAP, FEE);
        assertEq(second, keccak256(abi.encode(requester, uint256(1))), "nonce advances");
    }

    function test_agreeingProvidersArePaid() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        (,,, uint64 locked,,,,,,) = market.providerInfo(ps[0]);
        assertEq(locked, FACTOR * PRICE, "stake locked");
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, _results(GOOD, GOOD));
        vm.prank(coordinator);
        market.settle(st);
        assertEq(_owed(ps[0]), PRICE, "provider 0 paid");
        assertEq(_owed(ps[1]), PRICE, "provider 1 paid");
        assertEq(_owed(coordinator), FEE, "fee");
        assertEq(_owed(requester), 3 * uint256(CAP) + FEE - 2 * PRICE - FEE, "refund");
        (,,, uint64 lockedAfter,,, uint32 completed,,,) = market.providerInfo(ps[0]);
        assertEq(lockedAfter, 0, "stake released");
        assertEq(completed, 1, "completed counter");
        _checkConservation(0);
    }

    function test_twoAgainstOnePaysTwoAndSlashesOne() public {
        bytes32 jobId = _create(3, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 3, PRICE);
        uint256 requesterBefore = _owed(requester);
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, _results(GOOD, BAD, GOOD));
        vm.prank(coordinator);
        market.settle(st);
        assertEq(_owed(ps[0]), PRICE, "majority paid");
        assertEq(_owed(ps[2]), PRICE, "majority paid");
        assertEq(_owed(ps[1]), 0, "minority unpaid");
        (,, uint64 stake1,,,,, uint24 slashed1,,) = market.providerInfo(ps[1]);
        assertEq(stake1, 1_000e6 - FACTOR * PRICE, "minority slashed");
        assertEq(slashed1, 1, "slashed counter");
        uint256 escrow = 4 * uint256(CAP) + FEE;
        assertEq(
            _owed(requester) - requesterBefore,
            escrow - 2 * PRICE - FEE + FACTOR * PRICE,
            "refund includes slashed stake"
        );
        _checkConservation(0);
    }

    function test_tieBreakerAddedLater() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, _results(GOOD, BAD));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NoMajority.selector, jobId));
        market.settle(st);
        (ps, prices) = _list(_first(3), PRICE);
        vm.prank(coordinator);
        market.assign(jobId, termsOf[jobId], ps, prices);
        st = _settlement(jobId, ps, prices, _results(GOOD, BAD, GOOD));
        vm.prank(coordinator);
        market.settle(st);
        assertEq(_owed(ps[2]), PRICE, "tie-breaker paid");
        _checkConservation(0);
    }

    function test_unrevealedCommitIsSlashed() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _list(_first(3), PRICE);
        vm.prank(coordinator);
        market.assign(jobId, termsOf[jobId], ps, prices);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(GOOD, GOOD, 0));
        s.signed[2] = _commit(providerKeys[2], jobId, keccak256(abi.encodePacked(BAD, bytes32(0))));
        vm.prank(coordinator);
        market.settle(s);
        (,,,,,,, uint24 slashed2,,) = market.providerInfo(ps[2]);
        assertEq(slashed2, 1, "committed and never revealed: slashed");
        _checkConservation(0);
    }

    function test_silentProviderIsReleasedNotSlashed() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, _results(GOOD, 0));
        vm.prank(coordinator);
        market.settle(st);
        (,,, uint64 locked, uint64 free,,, uint24 slashed,,) = market.providerInfo(ps[1]);
        assertEq(locked, 0, "released");
        assertEq(free, 1_000e6, "stake intact");
        assertEq(slashed, 0, "not slashed");
        assertEq(_owed(ps[1]), 0, "not paid");
    }

    function test_toleranceCoordinatorNamesWinnersNobodySlashed() public {
        bytes32 jobId = _create(2, 1, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 3, PRICE);
        JobMarket.Settlement memory s = _settlement(
            jobId, ps, prices, _results(GOOD, keccak256("close to good"), BAD)
        );
        s.winners = 3; // providers 0 and 1 agree within tolerance
        vm.prank(coordinator);
        market.settle(s);
        assertEq(_owed(ps[0]), PRICE, "winner paid");
        assertEq(_owed(ps[1]), PRICE, "winner paid");
        (,,,,,,, uint24 slashed2,,) = market.providerInfo(ps[2]);
        assertEq(slashed2, 0, "nobody slashed on tolerance");
        _checkConservation(0);
    }

    function test_toleranceWinnersMustHaveRevealed() public {
        bytes32 jobId = _create(2, 1, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 3, PRICE);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(GOOD, GOOD, 0));
        s.winners = 5; // provider 2 did not reveal
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidWinners.selector, jobId, 5));
        market.settle(s);
    }

    function test_exactJobRejectsWinnersMask() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(GOOD, GOOD));
        s.winners = 3;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidWinners.selector, jobId, 3));
        market.settle(s);
    }

    function test_doubleSettleAndDoubleClaimRevert() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(GOOD, GOOD));
        vm.prank(coordinator);
        market.settle(s);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongStatus.selector, jobId, 3));
        market.settle(s);
        uint256 before = token.balanceOf(ps[0]);
        vm.prank(ps[0]);
        market.claim();
        assertEq(token.balanceOf(ps[0]) - before, PRICE, "claimed once");
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NothingToClaim.selector, ps[0]));
        market.claim();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongStatus.selector, jobId, 3));
        market.reclaim(jobId, termsOf[jobId], ps, prices);
    }

    function test_settleBatch() public {
        JobMarket.Settlement[] memory batch = new JobMarket.Settlement[](3);
        for (uint256 k; k < 3; ++k) {
            bytes32 jobId = _create(2, 0, CAP, FEE);
            (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
            batch[k] = _settlement(jobId, ps, prices, _results(GOOD, GOOD));
        }
        vm.prank(coordinator);
        market.settleBatch(batch);
        assertEq(_owed(providerAddrs[0]), 3 * uint256(PRICE), "paid for three jobs");
        assertEq(_owed(coordinator), 3 * uint256(FEE), "three fees");
        _checkConservation(0);
    }

    function test_settleBatchTooLarge() public {
        JobMarket.Settlement[] memory batch = new JobMarket.Settlement[](65);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.BatchTooLarge.selector, 65, 64));
        market.settleBatch(batch);
    }

    function test_reclaimAfterSettleDeadlineWithoutCoordinator(uint256 wait) public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Terms memory j = termsOf[jobId];
        vm.warp(j.settleDeadline);
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.ReclaimTooEarly.selector, jobId, j.settleDeadline)
        );
        market.reclaim(jobId, termsOf[jobId], ps, prices);
        vm.warp(uint256(j.settleDeadline) + 1 + bound(wait, 0, 3650 days));
        uint256 before = _owed(requester);
        vm.prank(requester);
        market.reclaim(jobId, termsOf[jobId], ps, prices);
        assertEq(_owed(requester) - before, _escrow(jobId), "whole escrow back");
        (,,, uint64 locked,,,,,,) = market.providerInfo(ps[0]);
        assertEq(locked, 0, "stake released");
        _checkConservation(0);
    }

    function test_reclaimUnassignedAfterAssignDeadline() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        JobMarket.Terms memory j = termsOf[jobId];
        address[] memory none = new address[](0);
        uint64[] memory noPrices = new uint64[](0);
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.ReclaimTooEarly.selector, jobId, j.assignDeadline)
        );
        market.reclaim(jobId, termsOf[jobId], none, noPrices);
        vm.warp(uint256(j.assignDeadline) + 1);
        vm.prank(requester);
        market.reclaim(jobId, termsOf[jobId], none, noPrices);
        assertEq(_owed(requester), _escrow(jobId), "escrow back");
    }

    function test_reclaimNeedsTheRecordedAssignment() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        vm.warp(block.timestamp + 2000);
        prices[1] = PRICE - 1;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RecordMismatch.selector, jobId));
        market.reclaim(jobId, termsOf[jobId], ps, prices);
    }

    function test_settleAfterDeadlineRefused() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Terms memory j = termsOf[jobId];
        vm.warp(uint256(j.settleDeadline) + 1);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(GOOD, GOOD));
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(
                JobMarket.SettleDeadlinePassed.selector, jobId, j.settleDeadline
            )
        );
        market.settle(s);
    }

    function test_cancelBeforeAssignmentOnly() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotRequester.selector, jobId, coordinator));
        market.cancel(jobId, termsOf[jobId]);
        vm.prank(requester);
        market.cancel(jobId, termsOf[jobId]);
        assertEq(_owed(requester), 3 * uint256(CAP) + FEE, "refund");
        bytes32 other = _create(2, 0, CAP, FEE);
        _assign(other, 2, PRICE);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongStatus.selector, other, 2));
        market.cancel(other, termsOf[other]);
    }

    function test_assignChecks() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _list(_first(2), PRICE);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotCoordinator.selector, jobId, requester));
        market.assign(jobId, termsOf[jobId], ps, prices);

        prices[1] = CAP + 1;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.PriceAboveCap.selector, CAP + 1, CAP));
        market.assign(jobId, termsOf[jobId], ps, prices);

        uint256[] memory dup = new uint256[](2);
        (ps, prices) = _list(dup, PRICE);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.DuplicateProvider.selector, providerAddrs[0])
        );
        market.assign(jobId, termsOf[jobId], ps, prices);

        uint256[] memory sameGroup = new uint256[](2);
        sameGroup[0] = 4;
        sameGroup[1] = 5;
        (ps, prices) = _list(sameGroup, PRICE);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.SameOperatorGroup.selector, providerAddrs[5], 7)
        );
        market.assign(jobId, termsOf[jobId], ps, prices);

        (ps, prices) = _list(_first(4), PRICE);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.TooManyProviders.selector, 4, 3));
        market.assign(jobId, termsOf[jobId], ps, prices);

        address stranger = vm.addr(0xBEEF);
        ps = new address[](1);
        ps[0] = stranger;
        prices = new uint64[](1);
        prices[0] = PRICE;
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.ProviderNotRegistered.selector, stranger)
        );
        market.assign(jobId, termsOf[jobId], ps, prices);
    }

    function test_assignKeepsEarlierEntries() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 1, PRICE);
        uint256[] memory swapped = new uint256[](2);
        swapped[0] = 1;
        swapped[1] = 0;
        (address[] memory ps, uint64[] memory prices) = _list(swapped, PRICE);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RecordMismatch.selector, jobId));
        market.assign(jobId, termsOf[jobId], ps, prices);
        (ps, prices) = _list(_first(1), PRICE);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NothingToAssign.selector, jobId));
        market.assign(jobId, termsOf[jobId], ps, prices);
    }

    function test_assignNeedsFreeStake() public {
        bytes32 jobId = _create(5, 0, 250e6, FEE);
        (address[] memory ps, uint64[] memory prices) = _list(_first(1), 250e6);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(
                ProviderRegistry.InsufficientFreeStake.selector, ps[0], 1_000e6, 1_250e6
            )
        );
        market.assign(jobId, termsOf[jobId], ps, prices);
    }

    function test_createJobValidation() public {
        JobMarket.JobParams memory p = _params(6, 0, CAP, FEE);
        JobMarket.PermitSig memory none;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidRedundancy.selector, 6));
        market.createJob(p, none);
        p = _params(2, 2, CAP, FEE);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidMode.selector, 2));
        market.createJob(p, none);
        p = _params(2, 0, CAP, FEE);
        p.coordinator = address(0);
        vm.prank(requester);
        vm.expectRevert(JobMarket.InvalidCoordinator.selector);
        market.createJob(p, none);
        p = _params(2, 0, 0, FEE);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidPriceCap.selector, 0));
        market.createJob(p, none);
        p = _params(2, 0, CAP, FEE);
        p.specCid = "";
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidSpecCid.selector, 0));
        market.createJob(p, none);
        p = _params(2, 0, CAP, FEE);
        p.settleDeadline = p.commitDeadline - 1;
        vm.prank(requester);
        vm.expectRevert(JobMarket.InvalidDeadlines.selector);
        market.createJob(p, none);
    }

    /// Only a signature by the assigned provider over this job's reveal counts.
    function testFuzz_onlySignedResultsCount(uint256 signerKey, bytes32 result) public {
        signerKey = bound(signerKey, 1, 1e30);
        vm.assume(signerKey != providerKeys[1] && result != bytes32(0));
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Settlement memory s = _settlement(jobId, ps, prices, _results(result, result));
        JobMarket.Signed memory forged = _reveal(signerKey, jobId, result, bytes32(0));
        s.signed[1] = forged; // signed by someone else, names ps[1] as provider in settle
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidSignature.selector, jobId, ps[1]));
        market.settle(s);
        // A valid reveal for another job does not count for this one either.
        bytes32 other = _create(2, 0, CAP, FEE);
        s.signed[1] = _reveal(providerKeys[1], other, result, bytes32(0));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.InvalidSignature.selector, jobId, ps[1]));
        market.settle(s);
    }

    /// Whatever the outcome, the coordinator is credited exactly the fee fixed at creation,
    /// providers at most their price, and all funds are accounted for.
    function testFuzz_coordinatorGetsExactlyTheFee(
        uint64 fee,
        uint64 cap,
        uint64 price,
        uint8 pattern
    ) public {
        fee = uint64(bound(fee, 0, 100_000e6));
        cap = uint64(bound(cap, 1, 100e6));
        price = uint64(bound(price, 0, cap));
        bytes32 jobId = _create(3, 0, cap, fee);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 3, price);
        bytes32[] memory results = new bytes32[](3);
        for (uint256 i; i < 3; ++i) {
            results[i] = (pattern >> i) & 1 == 1 ? BAD : GOOD;
        }
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, results);
        vm.prank(coordinator);
        market.settle(st);
        assertEq(_owed(coordinator), fee, "coordinator credit == fee");
        for (uint256 i; i < 3; ++i) {
            assertTrue(_owed(ps[i]) <= price, "provider paid at most its price");
        }
        _checkConservation(0);
    }

    function testFuzz_unbondingDelay(uint64 amount, uint256 early) public {
        amount = uint64(bound(amount, 1, 1_000e6));
        address p0 = providerAddrs[0];
        vm.prank(p0);
        market.requestUnbond(amount);
        uint40 readyAt = uint40(block.timestamp + UNBONDING);
        early = bound(early, 0, UNBONDING - 1);
        vm.warp(block.timestamp + early);
        vm.prank(p0);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.UnbondingNotReady.selector, p0, readyAt)
        );
        market.withdraw();
        vm.warp(readyAt);
        uint256 before = token.balanceOf(p0);
        vm.prank(p0);
        market.withdraw();
        assertEq(token.balanceOf(p0) - before, amount, "withdrawn");
        vm.prank(p0);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.NothingToWithdraw.selector, p0));
        market.withdraw();
    }

    function test_lockedStakeCannotUnbond() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, PRICE);
        address p0 = providerAddrs[0];
        vm.prank(p0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ProviderRegistry.InsufficientFreeStake.selector,
                p0,
                1_000e6 - FACTOR * PRICE,
                1_000e6
            )
        );
        market.requestUnbond(1_000e6);
    }

    function test_registryErrors() public {
        address p0 = providerAddrs[0];
        vm.prank(p0);
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.AlreadyRegistered.selector, p0));
        market.register(0);
        address stranger = vm.addr(0xBEEF);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.ProviderNotRegistered.selector, stranger)
        );
        market.stake(1);
        vm.prank(p0);
        vm.expectRevert(ProviderRegistry.ZeroAmount.selector);
        market.stake(0);
    }

    function test_stakeBelowMinimumNotAssignable() public {
        address p0 = providerAddrs[0];
        vm.prank(p0);
        market.requestUnbond(1_000e6 - MIN_STAKE + 1);
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _list(_first(1), 1);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(
                ProviderRegistry.StakeBelowMinimum.selector, p0, MIN_STAKE - 1, MIN_STAKE
            )
        );
        market.assign(jobId, termsOf[jobId], ps, prices);
    }

    // ------------------------------------------------------- providers on chain

    function _commitReveal(bytes32 jobId, address[] memory ps, uint64[] memory prices, uint256 i, bytes32 result) internal {
        bytes32 salt = keccak256(abi.encode("salt", i));
        JobMarket.Terms memory t = termsOf[jobId];
        vm.prank(ps[i]);
        market.commitOnChain(jobId, t, ps, prices, i, keccak256(abi.encodePacked(result, salt)));
        vm.prank(ps[i]);
        market.revealOnChain(jobId, t, ps, prices, i, result, salt);
    }

    function test_onChainRevealCountsWhenCoordinatorLeavesItOut() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        _commitReveal(jobId, ps, prices, 1, GOOD);
        (bytes32 commitHash, bytes32 result, bool revealed) = market.onChainEntry(jobId, 1);
        assertTrue(revealed && result == GOOD && commitHash != bytes32(0), "entry stored");
        JobMarket.Settlement memory st = _settlement(jobId, ps, prices, _results(GOOD, 0));
        vm.prank(coordinator);
        market.settle(st);
        assertEq(_owed(ps[1]), PRICE, "censored provider still paid");
        _checkConservation(0);
    }

    function test_finalizeByAnyoneAfterSettleDeadline() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        _commitReveal(jobId, ps, prices, 0, GOOD);
        _commitReveal(jobId, ps, prices, 1, GOOD);
        JobMarket.Terms memory t = termsOf[jobId];
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.FinalizeTooEarly.selector, jobId, t.settleDeadline)
        );
        market.finalize(jobId, t, ps, prices);
        vm.warp(uint256(t.settleDeadline) + 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.MajorityExists.selector, jobId));
        market.reclaim(jobId, t, ps, prices);
        vm.prank(vm.addr(0xD00D));
        market.finalize(jobId, t, ps, prices);
        assertEq(_owed(ps[0]), PRICE, "paid");
        assertEq(_owed(ps[1]), PRICE, "paid");
        assertEq(_owed(coordinator), 0, "no fee without settling");
        assertEq(_owed(requester), 3 * uint256(CAP) + FEE - 2 * PRICE, "fee refunded too");
        assertEq(_status(jobId), 3, "settled");
        _checkConservation(0);
    }

    function test_finalizeSlashesUnrevealedOnChainCommit() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 3, PRICE);
        _commitReveal(jobId, ps, prices, 0, GOOD);
        _commitReveal(jobId, ps, prices, 1, GOOD);
        JobMarket.Terms memory t = termsOf[jobId];
        vm.prank(ps[2]);
        market.commitOnChain(jobId, t, ps, prices, 2, keccak256("never revealed"));
        vm.warp(uint256(t.settleDeadline) + 1);
        market.finalize(jobId, t, ps, prices);
        (,,,,,,, uint24 slashed2,,) = market.providerInfo(ps[2]);
        assertEq(slashed2, 1, "committed on chain, never revealed: slashed");
        _checkConservation(0);
    }

    function test_noOnChainMajorityLeavesReclaim() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        _commitReveal(jobId, ps, prices, 0, GOOD);
        JobMarket.Terms memory t = termsOf[jobId];
        vm.warp(uint256(t.settleDeadline) + 1);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NoMajority.selector, jobId));
        market.finalize(jobId, t, ps, prices);
        vm.prank(requester);
        market.reclaim(jobId, t, ps, prices);
        assertEq(_owed(requester), _escrow(jobId), "escrow back");
    }

    function test_onChainErrors() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        (address[] memory ps, uint64[] memory prices) = _assign(jobId, 2, PRICE);
        JobMarket.Terms memory t = termsOf[jobId];
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotAssignedProvider.selector, jobId, ps[0]));
        market.commitOnChain(jobId, t, ps, prices, 1, GOOD);
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NotCommitted.selector, jobId, ps[0]));
        market.revealOnChain(jobId, t, ps, prices, 0, GOOD, GOOD);
        bytes32 commitHash = keccak256(abi.encodePacked(GOOD, BAD));
        vm.prank(ps[0]);
        market.commitOnChain(jobId, t, ps, prices, 0, commitHash);
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.AlreadyCommitted.selector, jobId, ps[0]));
        market.commitOnChain(jobId, t, ps, prices, 0, commitHash);
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.RevealMismatch.selector, jobId, ps[0]));
        market.revealOnChain(jobId, t, ps, prices, 0, BAD, GOOD);
        vm.prank(ps[0]);
        market.revealOnChain(jobId, t, ps, prices, 0, GOOD, BAD);
        vm.prank(ps[0]);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.AlreadyRevealed.selector, jobId, ps[0]));
        market.revealOnChain(jobId, t, ps, prices, 0, GOOD, BAD);
        vm.warp(uint256(t.commitDeadline) + 1);
        vm.prank(ps[1]);
        vm.expectRevert(
            abi.encodeWithSelector(JobMarket.CommitDeadlinePassed.selector, jobId, t.commitDeadline)
        );
        market.commitOnChain(jobId, t, ps, prices, 1, commitHash);
    }
}
