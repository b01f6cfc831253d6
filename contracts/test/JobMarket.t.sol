// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./Fixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {MarketBase} from "../src/MarketBase.sol";
import {JobMarketExt} from "../src/JobMarketExt.sol";
import {IERC20Permit} from "../src/IERC20Permit.sol";

contract Token18 {
    uint8 public constant decimals = 18;
}

contract JobMarketTest is Fixture {
    bytes32 internal constant X = keccak256("result-x");
    bytes32 internal constant Y = keccak256("result-y");

    event log_named_uint(string key, uint256 val);

    // ------------------------------------------------------------------ basics

    function test_createEscrowsWithPermitInOneCall() public {
        uint256 before = token.balanceOf(requester);
        bytes32 jobId = _create(2, 0, CAP, FEE);
        assertEq(before - token.balanceOf(requester), 4 * uint256(CAP) + FEE, "escrow (r+2)*cap+fee");
        assertEq(jobId, JobMarketExt(address(market)).jobIdFor(requester, 0), "jobId = keccak(requester, nonce)");
        (uint8 status, uint8 seats, bytes32 commitment) = market.getJob(jobId);
        assertEq(status, 1, "open");
        assertEq(seats, 0, "no seats");
        assertEq(commitment, JobMarketExt(address(market)).commitmentOf(termsOf[jobId], _seats(jobId)), "commitment");
        assertEq(
            JobMarketExt(address(market)).termsHash(termsOf[jobId]), keccak256(abi.encode(termsOf[jobId])), "termsHash"
        );
    }

    function test_agreeingProvidersArePaidForTimeUsed() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        // runtimes 1000 and 5000 ms: billed min(rt, 2*1000, timeout) = 1000, 2000
        _settle(jobId, _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 5000)));
        assertEq(_owed(providerAddrs[0]), 1000, "rate 1/ms * 1000 ms");
        assertEq(_owed(providerAddrs[1]), 2000, "billed at 2 * smallest");
        assertEq(_owed(coordinator), FEE, "fee");
        assertEq(_owed(requester), _escrow(jobId) - 3000 - FEE, "rest refunded");
        assertEq(_lockedOf(providerAddrs[0]), 0, "lock released");
        assertEq(_status(jobId), 3, "settled");
    }

    function test_payCappedAtPrice() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, 5000);
        _settle(jobId, _sig1(_rev(jobId, 0, X, 900_000)));
        assertEq(_owed(providerAddrs[0]), 5000, "pay <= price");
    }

    function test_twoAgainstOnePaysTwoAndBurnsOne() public {
        bytes32 jobId = _create(3, 0, CAP, FEE);
        _assign(jobId, 3, CAP);
        uint256 stake2 = _stakeOf(providerAddrs[2]);
        _settle(
            jobId, _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 1000), _rev(jobId, 2, Y, 1000))
        );
        assertEq(_stakeOf(providerAddrs[2]), stake2 - FACTOR * CAP, "loser's lock burned");
        assertEq(market.burned(), FACTOR * CAP, "burned total");
        assertEq(_owed(requester), _escrow(jobId) - 2000 - FEE, "slash not credited to anyone");
    }

    function test_toleranceCoordinatorNamesWinnersNobodySlashed() public {
        bytes32 jobId = _create(3, 1, CAP, FEE);
        _assign(jobId, 3, CAP);
        MarketBase.Settlement memory s = _settlement(
            jobId, _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, Y, 1000), _rev(jobId, 2, Y, 1000))
        );
        s.winners = 0x6;
        vm.prank(coordinator);
        market.settle(s);
        assertEq(_owed(providerAddrs[1]), 1000, "winner paid");
        assertEq(_owed(providerAddrs[0]), 0, "loser unpaid");
        assertEq(market.burned(), 0, "nobody slashed");
    }

    function test_toleranceWinnersMustVote() public {
        bytes32 jobId = _create(2, 1, CAP, FEE);
        _assign(jobId, 2, CAP);
        vm.warp(_revealClose(jobId) + 1);
        MarketBase.Settlement memory s = _settlement(jobId, _signed(_rev(jobId, 0, X, 1000), _none()));
        s.winners = 0x3;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidWinners.selector, jobId, 3));
        market.settle(s);
        s.winners = 0x1; // 1 of quorum 2: no majority
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NoMajority.selector, jobId));
        market.settle(s);
    }

    function test_exactJobRejectsWinnersMask() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, CAP);
        MarketBase.Settlement memory s = _settlement(jobId, _sig1(_rev(jobId, 0, X, 1)));
        s.winners = 1;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidWinners.selector, jobId, 1));
        market.settle(s);
    }

    function test_doubleSettleAndDoubleClaimRevert() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, CAP);
        MarketBase.Settlement memory s = _settlement(jobId, _sig1(_rev(jobId, 0, X, 1000)));
        vm.prank(coordinator);
        market.settle(s);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.WrongStatus.selector, jobId, 3));
        market.settle(s);
        vm.prank(providerAddrs[0]);
        market.claim();
        vm.prank(providerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NothingToClaim.selector, providerAddrs[0]));
        market.claim();
    }

    function test_badSignatureRefused() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, CAP);
        MarketBase.Signed memory e = _revealEntry(providerKeys[3], jobId, X, 1000, _saltOf(jobId, 0));
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.InvalidSignature.selector, jobId, providerAddrs[0])
        );
        market.settle(_settlement(jobId, _sig1(e)));
        e.kind = 3;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidSignatureKind.selector, 0, 3));
        market.settle(_settlement(jobId, _sig1(e)));
    }

    function test_settleBatchSkipsInvalidAndSettlesOthers() public {
        bytes32 a = _create(1, 0, CAP, FEE);
        bytes32 b = _create(1, 0, CAP, FEE);
        _assign(a, 1, CAP);
        _assign(b, 1, CAP);
        MarketBase.Settlement[] memory list = new MarketBase.Settlement[](3);
        list[0] = _settlement(a, _sig1(_rev(a, 0, X, 1000)));
        list[1] = _settlement(a, _sig1(_rev(a, 0, X, 1000))); // second time: skipped
        list[2] = _settlement(b, _sig1(_rev(b, 0, X, 1000)));
        vm.prank(coordinator);
        market.settleBatch(list);
        assertEq(_status(a), 3, "a settled");
        assertEq(_status(b), 3, "b settled");
        assertEq(_owed(coordinator), 2 * FEE, "fee once per job");
    }

    function test_settleBatchTooLarge() public {
        MarketBase.Settlement[] memory list = new MarketBase.Settlement[](65);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.BatchTooLarge.selector, 65, 64));
        market.settleBatch(list);
    }

    function test_settleAfterDeadlineRefused() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, CAP);
        MarketBase.Settlement memory s = _settlement(jobId, _sig1(_rev(jobId, 0, X, 1000)));
        uint32 dl = termsOf[jobId].settleDeadline;
        vm.warp(dl + 1);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.SettleDeadlinePassed.selector, jobId, dl));
        market.settle(s);
    }

    function test_reclaimUnassignedAfterAssignDeadline() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory none;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.ReclaimTooEarly.selector, jobId, t.assignDeadline)
        );
        JobMarketExt(address(market)).reclaim(jobId, t, none);
        vm.warp(t.assignDeadline + 1);
        vm.prank(requester);
        JobMarketExt(address(market)).reclaim(jobId, t, none);
        assertEq(_owed(requester), _escrow(jobId), "whole escrow");
    }

    function test_reclaimAfterSettleDeadlineReleasesLocks() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory seats = _seats(jobId);
        vm.prank(providerAddrs[5]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NotRequester.selector, jobId, providerAddrs[5]));
        JobMarketExt(address(market)).reclaim(jobId, t, seats);
        vm.warp(t.settleDeadline + 1);
        vm.prank(requester);
        JobMarketExt(address(market)).reclaim(jobId, t, seats);
        assertEq(_lockedOf(providerAddrs[0]), 0, "released");
        assertEq(_owed(requester), _escrow(jobId), "whole escrow");
        assertEq(_status(jobId), 4, "reclaimed");
    }

    function test_reclaimNeedsTheRecordedSeats() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        MarketBase.Seat[] memory seats = _seats(jobId);
        seats[1].price = 1;
        vm.warp(termsOf[jobId].settleDeadline + 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.RecordMismatch.selector, jobId));
        JobMarketExt(address(market)).reclaim(jobId, termsOf[jobId], seats);
    }

    function test_cancelBeforeAssignmentOnly() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        vm.prank(requester);
        JobMarketExt(address(market)).cancel(jobId, termsOf[jobId]);
        assertEq(_owed(requester), _escrow(jobId), "refund");
        bytes32 other = _create(1, 0, CAP, FEE);
        _assign(other, 1, CAP);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.WrongStatus.selector, other, 2));
        JobMarketExt(address(market)).cancel(other, termsOf[other]);
    }

    function test_abortRefundsWholeEscrowBeforeAnyOnChainCommit() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NotCoordinator.selector, jobId, requester));
        JobMarketExt(address(market)).abort(jobId, termsOf[jobId], _seats(jobId));
        vm.prank(coordinator);
        JobMarketExt(address(market)).abort(jobId, termsOf[jobId], _seats(jobId));
        assertEq(_owed(requester), _escrow(jobId), "whole escrow, fee included");
        assertEq(_lockedOf(providerAddrs[0]), 0, "released");
        assertEq(_status(jobId), 6, "aborted");

        bytes32 other = _create(2, 0, CAP, FEE);
        _assign(other, 2, CAP);
        _commitOnChain(other, 0, X, 1000);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.CommittedOnChain.selector, other));
        JobMarketExt(address(market)).abort(other, termsOf[other], _seats(other));
    }

    function test_assignChecks() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory none;
        MarketBase.Offer[] memory empty;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NotCoordinator.selector, jobId, requester));
        market.assign(jobId, t, none, empty);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NothingToAssign.selector, jobId));
        market.assign(jobId, t, none, empty);
        MarketBase.Offer[] memory four = _offersFor(jobId, _first(4), CAP);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.TooManyProviders.selector, 4, 3));
        market.assign(jobId, t, none, four);
        MarketBase.Offer[] memory high = _offersFor(jobId, _idx(0), CAP + 1);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.PriceAboveCap.selector, CAP + 1, CAP));
        market.assign(jobId, t, none, high);
        MarketBase.Offer[] memory same = _offersFor(jobId, _idx(4, 5), CAP);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.SameOperatorGroup.selector, providerAddrs[5], 7)
        );
        market.assign(jobId, t, none, same);
        MarketBase.Offer[] memory dup = new MarketBase.Offer[](2);
        dup[0] = _offer(providerKeys[0], jobId, t, 0, CAP, RATE, uint32(block.timestamp + 60));
        dup[1] = _offer(providerKeys[0], jobId, t, 1, CAP, RATE, uint32(block.timestamp + 60));
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.DuplicateProvider.selector, providerAddrs[0])
        );
        market.assign(jobId, t, none, dup);
        vm.warp(t.assignDeadline + 1);
        MarketBase.Offer[] memory late = _offersFor(jobId, _idx(0), CAP);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.AssignDeadlinePassed.selector, jobId, t.assignDeadline)
        );
        market.assign(jobId, t, none, late);
    }

    function test_assignNeedsFreeStake() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        vm.prank(providerAddrs[0]);
        JobMarketExt(address(market)).requestUnbond(1_000e6 - 10e6);
        MarketBase.Offer[] memory o = _offersFor(jobId, _idx(0), CAP);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketBase.StakeBelowMinimum.selector, providerAddrs[0], 10e6, MIN_STAKE
            )
        );
        market.assign(jobId, termsOf[jobId], _seats(jobId), o);
    }

    function test_createJobValidation() public {
        MarketBase.JobParams memory p = _params(6, 0, CAP, FEE);
        MarketBase.PermitSig memory none;
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidRedundancy.selector, 6));
        market.createJob(p, none);
        p = _params(1, 2, CAP, FEE);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidMode.selector, 2));
        market.createJob(p, none);
        p = _params(1, 0, MIN_PRICE - 1, FEE);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidPriceCap.selector, MIN_PRICE - 1));
        market.createJob(p, none);
        p = _params(1, 0, CAP, FEE);
        p.coordinator = providerAddrs[0];
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.CoordinatorNotBonded.selector, providerAddrs[0])
        );
        market.createJob(p, none);
        p = _params(1, 0, CAP, FEE);
        p.specCid = "";
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidSpecCid.selector, 0));
        market.createJob(p, none);
        p = _params(1, 0, CAP, FEE);
        p.timeoutMs = uint64(COMMIT_WINDOW) * 1000 + 1;
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidTimeout.selector, p.timeoutMs));
        market.createJob(p, none);
        p = _params(1, 0, CAP, FEE);
        p.settleDeadline -= 1;
        vm.expectRevert(MarketBase.InvalidDeadlines.selector);
        market.createJob(p, none);
        p = _params(1, 0, CAP, FEE);
        p.spareDeadline = p.assignDeadline - 1;
        vm.expectRevert(MarketBase.InvalidDeadlines.selector);
        market.createJob(p, none);
        vm.stopPrank();
    }

    function test_coordinatorBondLifecycle() public {
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.InsufficientBond.selector, coordinator, MIN_BOND, MIN_BOND + 1)
        );
        JobMarketExt(address(market)).requestCoordinatorUnbond(MIN_BOND + 1);
        vm.prank(coordinator);
        JobMarketExt(address(market)).requestCoordinatorUnbond(MIN_BOND);
        (uint64 bond, uint64 unbonding, uint40 readyAt) = JobMarketExt(address(market)).coordinatorInfo(coordinator);
        assertEq(bond, 0, "bond moved");
        assertEq(unbonding, MIN_BOND, "unbonding");
        assertEq(readyAt, block.timestamp + COORD_DELAY, "delay");
        MarketBase.JobParams memory p = _params(1, 0, CAP, FEE);
        MarketBase.PermitSig memory none;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.CoordinatorNotBonded.selector, coordinator));
        market.createJob(p, none);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.UnbondingNotReady.selector, coordinator, readyAt)
        );
        JobMarketExt(address(market)).withdrawCoordinatorBond();
        vm.warp(readyAt);
        uint256 before = token.balanceOf(coordinator);
        vm.prank(coordinator);
        JobMarketExt(address(market)).withdrawCoordinatorBond();
        assertEq(token.balanceOf(coordinator) - before, MIN_BOND, "bond returned in full");
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NothingToWithdraw.selector, coordinator));
        JobMarketExt(address(market)).withdrawCoordinatorBond();
    }

    function testFuzz_unbondingDelay(uint64 amount, uint256 early) public {
        amount = uint64(bound(amount, 1, 1_000e6));
        early = bound(early, 0, UNBONDING - 1);
        address who = providerAddrs[0];
        vm.prank(who);
        JobMarketExt(address(market)).requestUnbond(amount);
        vm.warp(block.timestamp + early);
        vm.prank(who);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.UnbondingNotReady.selector, who, uint40(T0 + UNBONDING))
        );
        JobMarketExt(address(market)).withdraw();
        vm.warp(T0 + UNBONDING);
        uint256 before = token.balanceOf(who);
        vm.prank(who);
        JobMarketExt(address(market)).withdraw();
        assertEq(token.balanceOf(who) - before, amount, "withdrawn");
    }

    function testFuzz_coordinatorGetsExactlyTheFee(uint64 fee, uint64 runtime) public {
        fee = uint64(bound(fee, 0, 1e11));
        runtime = uint64(bound(runtime, 0, TIMEOUT));
        bytes32 jobId = _create(2, 0, CAP, fee);
        _assign(jobId, 2, CAP);
        _settle(jobId, _signed(_rev(jobId, 0, X, runtime), _rev(jobId, 1, X, runtime)));
        assertEq(_owed(coordinator), fee, "fee exactly");
        uint256 pay = runtime > CAP ? CAP : runtime;
        assertEq(_owed(requester), _escrow(jobId) - 2 * pay - fee, "requester gets the rest");
    }

    function test_lockedStakeCannotUnbond() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 1, CAP);
        uint64 free = uint64(1_000e6 - FACTOR * CAP);
        vm.prank(providerAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketBase.InsufficientFreeStake.selector, providerAddrs[0], free, free + 1
            )
        );
        JobMarketExt(address(market)).requestUnbond(free + 1);
    }

    // ------------------------------------------------------------- on-chain path

    function test_noCoordinatorPathFinalize() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        _commitOnChain(jobId, 0, X, 1000);
        _commitOnChain(jobId, 1, X, 3000);
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 0, X, 1000, false);
        // anyone may post provider 1's reveal with its signature
        bytes32 salt = _saltOf(jobId, 1);
        bytes memory sig = _revealSig(providerKeys[1], jobId, X, 3000, salt);
        JobMarketExt(address(market)).revealOnChain(jobId, termsOf[jobId], _seats(jobId), 1, X, 3000, salt, sig, "");
        (bytes32 h, bytes32 result, uint64 rt, bool committed, bool revealed, bool votes) =
            JobMarketExt(address(market)).onChainEntry(jobId, 1);
        assertEq(h, _commitHash(jobId, providerAddrs[1], X, 3000, salt), "hash");
        assertEq(result, X, "result");
        assertEq(rt, 3000, "runtime");
        assertTrue(committed && revealed && votes, "flags");
        MarketBase.Terms memory t = termsOf[jobId];
        vm.expectRevert(abi.encodeWithSelector(MarketBase.FinalizeTooEarly.selector, jobId, t.settleDeadline));
        JobMarketExt(address(market)).finalize(jobId, t, _seats(jobId));
        vm.warp(t.settleDeadline + 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.MajorityExists.selector, jobId));
        JobMarketExt(address(market)).reclaim(jobId, t, _seats(jobId));
        vm.prank(providerAddrs[5]);
        JobMarketExt(address(market)).finalize(jobId, t, _seats(jobId));
        assertEq(_owed(providerAddrs[0]), 1000, "paid");
        assertEq(_owed(providerAddrs[1]), 2000, "billed 2 * smallest");
        assertEq(_owed(coordinator), 0, "no fee without settle");
        assertEq(_owed(requester), _escrow(jobId) - 3000, "fee back to the requester");
    }

    function test_onChainErrors() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory seats = _seats(jobId);
        vm.prank(providerAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NotAssignedProvider.selector, jobId, providerAddrs[1]));
        JobMarketExt(address(market)).commitOnChain(jobId, t, seats, 0, bytes32(uint256(1)));
        _commitOnChain(jobId, 0, X, 1000);
        vm.prank(providerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.AlreadyCommitted.selector, jobId, providerAddrs[0]));
        JobMarketExt(address(market)).commitOnChain(jobId, t, seats, 0, bytes32(uint256(1)));
        uint32 open = uint32(_revealOpen(jobId));
        vm.prank(providerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.RevealNotOpen.selector, jobId, open));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), "", "");
        vm.warp(uint256(open) + 1);
        vm.prank(providerAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.CommitDeadlinePassed.selector, jobId, open));
        JobMarketExt(address(market)).commitOnChain(jobId, t, seats, 1, bytes32(uint256(1)));
        vm.prank(providerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.RevealMismatch.selector, jobId, providerAddrs[0]));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, Y, 1000, _saltOf(jobId, 0), "", "");
        // a stranger without the provider's signature
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidSignature.selector, jobId, providerAddrs[0]));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), "", "");
        // a receipt not from the coordinator
        bytes32 salt1 = _saltOf(jobId, 1);
        bytes memory badReceipt = _receiptSig(
            providerKeys[3], jobId, providerAddrs[1], 1, _commitHash(jobId, providerAddrs[1], X, 1000, salt1)
        );
        vm.prank(providerAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidReceipt.selector, jobId, providerAddrs[1]));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 1, X, 1000, salt1, "", badReceipt);
        _revealOnChain(jobId, 0, X, 1000, false);
        vm.prank(providerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.AlreadyRevealed.selector, jobId, providerAddrs[0]));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), "", "");
        uint32 close = open + t.revealWindow;
        vm.warp(uint256(close) + 1);
        vm.prank(providerAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.RevealWindowClosed.selector, jobId, close));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 1, X, 1000, salt1, "", "");
    }

    function test_receiptRevealVotesAndUnreceiptedDoesNot() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 0, X, 1000, true);
        _revealOnChain(jobId, 1, X, 1000, false);
        (,,,,, bool v0) = JobMarketExt(address(market)).onChainEntry(jobId, 0);
        (,,,, bool r1, bool v1) = JobMarketExt(address(market)).onChainEntry(jobId, 1);
        assertTrue(v0, "receipt reveal votes");
        assertTrue(r1 && !v1, "unreceipted reveal recorded, no vote");
        vm.warp(termsOf[jobId].settleDeadline + 1);
        // 1 vote of quorum 2: undecided, reclaim
        vm.prank(requester);
        JobMarketExt(address(market)).reclaim(jobId, termsOf[jobId], _seats(jobId));
        assertEq(_status(jobId), 4, "reclaimed");
    }

    // ------------------------------------------------------------ the attacks

    /// 1. A COMMIT entry cannot slash a provider whose reveal of that commitment is on chain,
    /// and cannot be used before the reveal window closed.
    function test_attack01_commitOnlySlashOfRevealedProvider() public {
        // attacker = requester and coordinator, two sybils (providers 0, 1) and a victim (2)
        uint256 attackerKey = 0xBAD;
        address attacker = vm.addr(attackerKey);
        token.mint(attacker, 1_000e6);
        vm.startPrank(attacker);
        token.approve(address(market), MIN_BOND);
        JobMarketExt(address(market)).bondCoordinator(MIN_BOND, 0, 0, 0, 0);
        vm.stopPrank();
        MarketBase.JobParams memory p = _params(3, 0, CAP, FEE);
        p.coordinator = attacker;
        bytes32 jobId = _createWith(attackerKey, p);
        _assignIdx(jobId, _first(3), MIN_PRICE);
        address victim = providerAddrs[2];
        uint256 stakeBefore = _stakeOf(victim);
        MarketBase.Signed[] memory entries =
            _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 1000), _com(jobId, 2, X, 1000));
        MarketBase.Settlement memory s = _settlement(jobId, entries);
        // before the reveal window closed: refused
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.SettleTooEarly.selector, jobId, 2));
        market.settle(s);
        // the victim reveals on chain (no receipt, no on-chain commit: recorded, no vote)
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 2, X, 1000, false);
        vm.warp(_revealClose(jobId) + 1);
        vm.prank(attacker);
        market.settle(s);
        assertEq(_stakeOf(victim), stakeBefore, "victim keeps its whole stake");
        assertEq(market.burned(), 0, "nothing slashed");
        assertEq(_lockedOf(victim), 0, "victim released");
    }

    /// 2. Sybil voters chosen by the coordinator: the victim is seated only with its consent,
    /// and a slash is burned, so the attacker never gains.
    function test_attack02_sybilMajoritySlashProfitsNobody() public {
        uint256 attackerKey = 0xBAD;
        address attacker = vm.addr(attackerKey);
        token.mint(attacker, 1_000e6);
        vm.startPrank(attacker);
        token.approve(address(market), MIN_BOND);
        JobMarketExt(address(market)).bondCoordinator(MIN_BOND, 0, 0, 0, 0);
        vm.stopPrank();
        MarketBase.JobParams memory p = _params(3, 0, CAP, FEE);
        p.coordinator = attacker;
        bytes32 jobId = _createWith(attackerKey, p);
        // without the victim's Accept nobody can seat it
        MarketBase.Offer[] memory forged = _offersFor(jobId, _idx(2), CAP);
        forged[0].s = bytes32(uint256(forged[0].s) ^ 1);
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidAccept.selector, jobId, providerAddrs[2]));
        market.assign(jobId, termsOf[jobId], _seats(jobId), forged);
        // the victim accepted (it allow-listed this coordinator): sybils outvote it
        _assignIdx(jobId, _first(3), CAP);
        uint256 attackerFunds = token.balanceOf(attacker) + _owed(attacker) + _owed(providerAddrs[0])
            + _owed(providerAddrs[1]) + _stakeOf(providerAddrs[0]) + _stakeOf(providerAddrs[1]) + _escrow(jobId);
        MarketBase.Settlement memory s = _settlement(
            jobId, _signed(_rev(jobId, 0, Y, 1000), _rev(jobId, 1, Y, 1000), _rev(jobId, 2, X, 1000))
        );
        vm.prank(attacker);
        market.settle(s);
        uint256 after_ = token.balanceOf(attacker) + _owed(attacker) + _owed(providerAddrs[0])
            + _owed(providerAddrs[1]) + _stakeOf(providerAddrs[0]) + _stakeOf(providerAddrs[1]);
        assertEq(after_, attackerFunds, "attacker and sybils end with exactly what they put in");
        assertEq(market.burned(), FACTOR * CAP, "the slash is burned, credited to nobody");
    }

    /// 3. Odd redundancy, a bare on-chain majority plus one commit-only seat: exactly one of
    /// finalize / reclaim succeeds, ten years later too.
    function test_attack03_fundsNeverFrozen() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 2, CAP); // redundancy 1 + a checker
        _commitOnChain(jobId, 0, X, 1000);
        _commitOnChain(jobId, 1, Y, 1000);
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 0, X, 1000, false);
        vm.warp(block.timestamp + 10 * 365 days);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory seats = _seats(jobId);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NoMajority.selector, jobId));
        JobMarketExt(address(market)).finalize(jobId, t, seats);
        vm.prank(requester);
        JobMarketExt(address(market)).reclaim(jobId, t, seats);
        assertEq(_owed(requester), _escrow(jobId), "requester refunded");
        assertEq(_lockedOf(providerAddrs[0]) + _lockedOf(providerAddrs[1]), 0, "locks released");
    }

    /// 4. Redundancy 1 + checker disagree: a tie-breaker is seated and the cheater, who
    /// committed and revealed on chain, is slashed by finalize while the honest pair is paid.
    function test_attack04_tieBreakerResolvesRedundancyOneSplit() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        _commitOnChain(jobId, 0, Y, 1000); // cheater
        _commitOnChain(jobId, 1, X, 1000); // honest checker
        vm.warp(block.timestamp + COMMIT_WINDOW); // split seen off chain; still <= revealOpen
        assertTrue(block.timestamp > termsOf[jobId].assignDeadline, "past the assign deadline");
        _assignIdx(jobId, _idx(2), CAP); // tie-breaker
        _commitOnChain(jobId, 2, X, 1000);
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 0, Y, 1000, false);
        _revealOnChain(jobId, 1, X, 1000, false);
        _revealOnChain(jobId, 2, X, 1000, false);
        vm.warp(termsOf[jobId].settleDeadline + 1);
        uint256 stake0 = _stakeOf(providerAddrs[0]);
        JobMarketExt(address(market)).finalize(jobId, termsOf[jobId], _seats(jobId));
        assertEq(_owed(providerAddrs[0]), 0, "cheater unpaid");
        assertEq(_stakeOf(providerAddrs[0]), stake0 - FACTOR * CAP, "cheater slashed");
        assertEq(_owed(providerAddrs[1]), 1000, "checker paid");
        assertEq(_owed(providerAddrs[2]), 1000, "tie-breaker paid");
    }

    /// 5. Copying an on-chain commitment: the hash binds job and provider, so the copier
    /// cannot open it, and reveals are refused while anyone may still commit.
    function test_attack05_copiedCommitmentCannotBeOpened() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        _commitOnChain(jobId, 0, X, 1000);
        (bytes32 h,,,,,) = JobMarketExt(address(market)).onChainEntry(jobId, 0);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory seats = _seats(jobId);
        vm.prank(providerAddrs[1]);
        JobMarketExt(address(market)).commitOnChain(jobId, t, seats, 1, h); // copies the hash
        vm.prank(providerAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.RevealNotOpen.selector, jobId, uint32(_revealOpen(jobId)))
        );
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), "", "");
        vm.warp(_revealOpen(jobId) + 1);
        _revealOnChain(jobId, 0, X, 1000, false);
        vm.prank(providerAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.RevealMismatch.selector, jobId, providerAddrs[1]));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 1, X, 1000, _saltOf(jobId, 0), "", "");
        vm.warp(t.settleDeadline + 1);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.NoMajority.selector, jobId));
        JobMarketExt(address(market)).finalize(jobId, t, seats);
        vm.prank(requester);
        JobMarketExt(address(market)).reclaim(jobId, t, seats);
        assertEq(_owed(providerAddrs[1]), 0, "copier unpaid");
        assertEq(_owed(requester), _escrow(jobId), "requester refunded");
    }

    /// 6. No lock without the provider's own Accept for this job, seat, price and terms.
    function test_attack06_lockWithoutConsentRefused() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        bytes32 other = _create(1, 0, CAP, FEE);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory none;
        address victim = providerAddrs[0];
        // signed by someone else
        MarketBase.Offer[] memory o = new MarketBase.Offer[](1);
        o[0] = _offer(providerKeys[1], jobId, t, 0, CAP, RATE, uint32(block.timestamp + 60));
        o[0].provider = victim;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidAccept.selector, jobId, victim));
        market.assign(jobId, t, none, o);
        // the victim's Accept for another job
        o[0] = _offer(providerKeys[0], other, termsOf[other], 0, CAP, RATE, uint32(block.timestamp + 60));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidAccept.selector, jobId, victim));
        market.assign(jobId, t, none, o);
        // its Accept at a lower price, replayed at a higher one
        o[0] = _offer(providerKeys[0], jobId, t, 0, CAP / 2, RATE, uint32(block.timestamp + 60));
        o[0].price = CAP;
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidAccept.selector, jobId, victim));
        market.assign(jobId, t, none, o);
        // an expired Accept
        o[0] = _offer(providerKeys[0], jobId, t, 0, CAP, RATE, uint32(block.timestamp + 60));
        vm.warp(block.timestamp + 61);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.OfferExpired.selector, jobId, victim, o[0].expiry)
        );
        market.assign(jobId, t, none, o);
        assertEq(_lockedOf(victim), 0, "nothing locked");
    }

    /// 7. A split after the assign deadline still gets a tie-breaker (until the spare
    /// deadline and the reveal opening), and the honest provider is paid.
    function test_attack07_spareSeatAfterAssignDeadline() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        vm.warp(termsOf[jobId].assignDeadline + 1);
        _assignIdx(jobId, _idx(2), CAP);
        vm.warp(_revealOpen(jobId) + 1);
        MarketBase.Offer[] memory late = _offersFor(jobId, _idx(3), CAP);
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketBase.SpareDeadlinePassed.selector, jobId, termsOf[jobId].spareDeadline
            )
        );
        market.assign(jobId, termsOf[jobId], _seats(jobId), late);
        _settle(
            jobId, _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, Y, 1000), _rev(jobId, 2, X, 1000))
        );
        assertEq(_owed(providerAddrs[0]), 1000, "honest paid");
        assertEq(_owed(providerAddrs[2]), 1000, "tie-breaker paid");
        assertEq(_owed(providerAddrs[1]), 0, "dissenter unpaid");
    }

    /// 8. A provider front-running with an on-chain reveal cannot revert a batch: its job is
    /// skipped (or decided by the override), the others settle.
    function test_attack08_frontRunRevealCannotRevertBatch() public {
        bytes32 a = _create(2, 0, CAP, FEE);
        bytes32 b = _create(2, 0, CAP, FEE);
        _assign(a, 2, CAP);
        _assign(b, 2, CAP);
        _commitOnChain(a, 1, Y, 1000);
        vm.warp(_revealOpen(a) + 1);
        MarketBase.Settlement[] memory list = new MarketBase.Settlement[](2);
        list[0] = _settlement(a, _signed(_rev(a, 0, X, 1000), _none()));
        list[1] = _settlement(b, _signed(_rev(b, 0, X, 1000), _rev(b, 1, X, 1000)));
        _revealOnChain(a, 1, Y, 1000, false); // the front-run
        vm.prank(coordinator);
        market.settleBatch(list);
        assertEq(_status(a), 2, "split job skipped");
        assertEq(_status(b), 3, "other job settled");
        assertEq(_owed(providerAddrs[0]), 1000, "b's provider paid");
    }

    /// 9. A losing on-chain reveal is slashed by settle exactly as by finalize.
    function test_attack09_losingOnChainRevealSlashedOnEveryPath() public {
        bytes32 a = _create(3, 0, CAP, FEE);
        _assign(a, 3, CAP);
        _commitOnChain(a, 2, Y, 1000);
        vm.warp(_revealOpen(a) + 1);
        _revealOnChain(a, 2, Y, 1000, false);
        uint256 stake2 = _stakeOf(providerAddrs[2]);
        // the coordinator leaves seat 2 out: the voting on-chain reveal still counts
        _settle(a, _signed(_rev(a, 0, X, 1000), _rev(a, 1, X, 1000), _none()));
        assertEq(_stakeOf(providerAddrs[2]), stake2 - FACTOR * CAP, "settle slashes");

        bytes32 b = _create(3, 0, CAP, FEE);
        _assign(b, 3, CAP);
        _commitOnChain(b, 0, X, 1000);
        _commitOnChain(b, 1, X, 1000);
        _commitOnChain(b, 2, Y, 1000);
        vm.warp(_revealOpen(b) + 1);
        _revealOnChain(b, 0, X, 1000, false);
        _revealOnChain(b, 1, X, 1000, false);
        _revealOnChain(b, 2, Y, 1000, false);
        vm.warp(termsOf[b].settleDeadline + 1);
        stake2 = _stakeOf(providerAddrs[2]);
        JobMarketExt(address(market)).finalize(b, termsOf[b], _seats(b));
        assertEq(_stakeOf(providerAddrs[2]), stake2 - FACTOR * CAP, "finalize slashes alike");
    }

    /// 10. No zero price, zero rate, or cap below the minimum.
    function test_attack10_zeroPriceRefused() public {
        bytes32 jobId = _create(1, 0, CAP, FEE);
        MarketBase.Offer[] memory o = _offersFor(jobId, _idx(0), 0);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.PriceBelowMinimum.selector, 0, MIN_PRICE));
        market.assign(jobId, termsOf[jobId], _seats(jobId), o);
        o = new MarketBase.Offer[](1);
        o[0] = _offer(providerKeys[0], jobId, termsOf[jobId], 0, CAP, 0, uint32(block.timestamp + 60));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidRate.selector, providerAddrs[0]));
        market.assign(jobId, termsOf[jobId], _seats(jobId), o);
        MarketBase.JobParams memory p = _params(1, 0, 0, FEE);
        MarketBase.PermitSig memory none;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidPriceCap.selector, 0));
        market.createJob(p, none);
    }

    /// 11. Constructor arguments and the token's decimals are checked.
    function test_attack11_constructorChecks() public {
        IERC20Permit t = IERC20Permit(address(token));
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "stakeFactor"));
        new JobMarket(t, MIN_STAKE, UNBONDING, 0, MIN_PRICE, MIN_BOND, COORD_DELAY);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "stakeFactor"));
        new JobMarket(t, MIN_STAKE, UNBONDING, 101, MIN_PRICE, MIN_BOND, COORD_DELAY);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "minStake"));
        new JobMarket(t, 0, UNBONDING, FACTOR, MIN_PRICE, MIN_BOND, COORD_DELAY);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "minPrice"));
        new JobMarket(t, MIN_STAKE, UNBONDING, FACTOR, 0, MIN_BOND, COORD_DELAY);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "minCoordinatorBond")
        );
        new JobMarket(t, MIN_STAKE, UNBONDING, FACTOR, MIN_PRICE, 0, COORD_DELAY);
        vm.expectRevert(
            abi.encodeWithSelector(MarketBase.InvalidConstructorArgument.selector, "coordinatorUnbondDelay")
        );
        new JobMarket(t, MIN_STAKE, UNBONDING, FACTOR, MIN_PRICE, MIN_BOND, 90 days);
        IERC20Permit t18 = IERC20Permit(address(new Token18()));
        vm.expectRevert(abi.encodeWithSelector(MarketBase.TokenDecimals.selector, 18));
        new JobMarket(t18, MIN_STAKE, UNBONDING, FACTOR, MIN_PRICE, MIN_BOND, COORD_DELAY);
    }

    /// 13. An early settlement cannot cut out a seat still inside its windows.
    function test_attack13_earlySettleCutsOutSeat() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        vm.warp(block.timestamp + 100);
        _assignIdx(jobId, _idx(2), CAP); // a spot-checker, seated later
        MarketBase.Signed[] memory twoOf3 =
            _signed(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 1000), _none());
        MarketBase.Settlement memory s = _settlement(jobId, twoOf3);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.SettleTooEarly.selector, jobId, 2));
        market.settle(s);
        _commitOnChain(jobId, 2, X, 1000);
        vm.warp(uint256(_seats(jobId)[2].assignedAt) + COMMIT_WINDOW + 1); // past its commit deadline
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.SettleTooEarly.selector, jobId, 2));
        market.settle(s); // committed on chain: still live until it reveals or the window closes
        _revealOnChain(jobId, 2, X, 1000, false);
        vm.prank(coordinator);
        market.settle(s);
        assertEq(_owed(providerAddrs[2]), 1000, "the late seat is paid");
    }

    // ------------------------------------------------------------------- gas

    /// Someone holding a provider's signed Reveal (its coordinator) posts it on chain without
    /// the receipt, so it records no vote: the provider's own reveal with the receipt still
    /// counts, and the job is decided for the honest majority.
    function test_revealWithoutReceiptCannotTakeTheProvidersVote() public {
        bytes32 jobId = _create(2, 0, CAP, FEE);
        _assign(jobId, 2, CAP);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory seats = _seats(jobId);
        vm.warp(_revealOpen(jobId) + 1);
        address p0 = providerAddrs[0];
        bytes memory sig = _revealSig(providerKeys[0], jobId, X, 1000, _saltOf(jobId, 0));
        vm.prank(coordinator); // anyone may post it; without the receipt it cannot vote
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), sig, "");
        (,,,, bool revealed, bool votes) = JobMarketExt(address(market)).onChainEntry(jobId, 0);
        assertTrue(revealed && !votes, "recorded without a vote");
        _revealOnChain(jobId, 0, X, 1000, true); // the provider, with its receipt
        (,,,, revealed, votes) = JobMarketExt(address(market)).onChainEntry(jobId, 0);
        assertTrue(revealed && votes, "the receipt makes it a vote");
        bytes memory receipt = _receiptSig(
            coordinatorKey, jobId, p0, 0, _commitHash(jobId, p0, X, 1000, _saltOf(jobId, 0))
        );
        vm.prank(p0);
        vm.expectRevert(abi.encodeWithSelector(MarketBase.AlreadyRevealed.selector, jobId, p0));
        JobMarketExt(address(market)).revealOnChain(jobId, t, seats, 0, X, 1000, _saltOf(jobId, 0), "", receipt);
        _revealOnChain(jobId, 1, X, 1000, true);
        vm.warp(t.settleDeadline + 1);
        uint256 requesterBefore = _owed(requester);
        JobMarketExt(address(market)).finalize(jobId, t, seats);
        assertEq(_status(jobId), 3, "settled for the two agreeing votes");
        // each provider is paid its 1,000 ms at one unit per ms; nothing is burned; the
        // requester gets the rest back (finalize returns the fee too)
        assertEq(_owed(p0), 1000, "the provider whose reveal was posted first is paid");
        assertEq(_owed(providerAddrs[1]), 1000, "the other provider is paid");
        assertEq(market.burned(), 0, "nobody slashed");
        assertEq(_owed(requester) - requesterBefore, _escrow(jobId) - 2000, "rest refunded");
        assertEq(_owed(coordinator), 0, "no fee for a job the coordinator did not settle");
    }

    /// The extension runs only in the market's storage: called directly it refuses.
    function test_extensionRefusesDirectCalls() public {
        JobMarketExt ext = JobMarketExt(market.extension());
        vm.expectRevert(JobMarketExt.DirectCall.selector);
        ext.register(0);
        vm.expectRevert(JobMarketExt.DirectCall.selector);
        ext.withdraw();
    }

    function _sig1(MarketBase.Signed memory a) internal pure returns (MarketBase.Signed[] memory r) {
        r = new MarketBase.Signed[](1);
        r[0] = a;
    }
}
