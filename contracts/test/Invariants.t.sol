// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {TestBase} from "./Base.sol";
import {Fixture} from "./Fixture.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {JobMarket} from "../src/JobMarket.sol";

/// Drives the market through random sequences of every operation and keeps ghost books of
/// what each party must be owed; the invariants compare them with the chain.
contract Handler is TestBase {
    JobMarket internal market;
    TestUSD internal token;
    uint256 internal coordinatorKey;
    uint256[] internal requesterKeys;
    uint256[] internal providerKeys;
    uint64 internal factor;

    bytes32[] public jobs;
    mapping(bytes32 => JobMarket.Terms) internal terms;
    mapping(bytes32 => address[]) internal assignedTo;
    mapping(bytes32 => uint64[]) internal pricesOf;

    // ghost books
    mapping(address => uint256) public expectedEarned; // provider payments owed by outcomes
    mapping(address => uint256) public claimedBy;
    uint256 public settledFees;
    uint256 public expectedSlashed;
    bool public reclaimFailed;
    bool public payoutMismatch;
    uint256 public settledJobs;

    constructor(
        JobMarket market_,
        TestUSD token_,
        uint256 coordinatorKey_,
        uint256[] memory requesterKeys_,
        uint256[] memory providerKeys_
    ) {
        market = market_;
        token = token_;
        coordinatorKey = coordinatorKey_;
        requesterKeys = requesterKeys_;
        providerKeys = providerKeys_;
        factor = market_.stakeFactor();
    }

    function jobCount() external view returns (uint256) {
        return jobs.length;
    }

    function parties() external view returns (address[] memory all) {
        all = new address[](requesterKeys.length + providerKeys.length + 1);
        uint256 k;
        for (uint256 i; i < requesterKeys.length; ++i) {
            all[k++] = vm.addr(requesterKeys[i]);
        }
        for (uint256 i; i < providerKeys.length; ++i) {
            all[k++] = vm.addr(providerKeys[i]);
        }
        all[k] = vm.addr(coordinatorKey);
    }

    function providers() external view returns (address[] memory all) {
        all = new address[](providerKeys.length);
        for (uint256 i; i < providerKeys.length; ++i) {
            all[i] = vm.addr(providerKeys[i]);
        }
    }

    function openEscrow() external view returns (uint256 sum) {
        for (uint256 i; i < jobs.length; ++i) {
            (uint8 status,,) = market.getJob(jobs[i]);
            if (status == 1 || status == 2) {
                JobMarket.Terms memory t = terms[jobs[i]];
                sum += (uint256(t.redundancy) + 1) * t.priceCap + t.fee;
            }
        }
    }

    function lockedByOpenJobs() external view returns (uint256 sum) {
        for (uint256 i; i < jobs.length; ++i) {
            (uint8 status,,) = market.getJob(jobs[i]);
            if (status == 2) {
                uint64[] memory prices = pricesOf[jobs[i]];
                for (uint256 k; k < prices.length; ++k) {
                    sum += uint256(prices[k]) * factor;
                }
            }
        }
    }

    // ------------------------------------------------------------------ actions

    function createJob(uint256 seed, uint64 cap, uint64 fee) external {
        uint256 key = requesterKeys[seed % requesterKeys.length];
        address requester = vm.addr(key);
        uint8 redundancy = uint8(1 + (seed >> 8) % 3);
        cap = uint64(bound(cap, 1, 40e6));
        fee = uint64(bound(fee, 0, 5e6));
        JobMarket.JobParams memory p = JobMarket.JobParams({
            specDigest: bytes32(seed),
            specCid: bytes("bafkreispec"),
            coordinator: vm.addr(coordinatorKey),
            redundancy: redundancy,
            mode: 0,
            priceCap: cap,
            fee: fee,
            assignDeadline: uint32(block.timestamp + 1000),
            commitDeadline: uint32(block.timestamp + 2000),
            settleDeadline: uint32(block.timestamp + 3000)
        });
        uint256 escrow = (uint256(redundancy) + 1) * cap + fee;
        vm.prank(requester);
        token.approve(address(market), escrow);
        JobMarket.PermitSig memory none;
        vm.prank(requester);
        bytes32 jobId = market.createJob(p, none);
        jobs.push(jobId);
        terms[jobId] = JobMarket.Terms({
            requester: requester,
            coordinator: p.coordinator,
            redundancy: redundancy,
            mode: 0,
            priceCap: cap,
            fee: fee,
            assignDeadline: p.assignDeadline,
            commitDeadline: p.commitDeadline,
            settleDeadline: p.settleDeadline
        });
    }

    function assign(uint256 seed, uint64 price) external {
        if (jobs.length == 0) return;
        bytes32 jobId = jobs[seed % jobs.length];
        JobMarket.Terms memory t = terms[jobId];
        address[] storage current = assignedTo[jobId];
        // usually the full redundancy at once, sometimes one more (a tie-breaker)
        uint256 n = current.length == 0 ? t.redundancy + (seed >> 16) % 2 : current.length + 1;
        if (n > uint256(t.redundancy) + 1) n = uint256(t.redundancy) + 1;
        address[] memory list = new address[](n);
        uint64[] memory prices = new uint64[](n);
        uint256 start = (seed >> 24) % providerKeys.length;
        for (uint256 i; i < n; ++i) {
            if (i < current.length) {
                list[i] = current[i];
                prices[i] = pricesOf[jobId][i];
            } else {
                // distinct providers: walk the ring from a random start, skipping used ones
                list[i] = vm.addr(providerKeys[(start + i) % providerKeys.length]);
                prices[i] = uint64(bound(price, 0, t.priceCap));
            }
        }
        vm.prank(t.coordinator);
        try market.assign(jobId, t, list, prices) {
            delete assignedTo[jobId];
            delete pricesOf[jobId];
            for (uint256 i; i < n; ++i) {
                assignedTo[jobId].push(list[i]);
                pricesOf[jobId].push(prices[i]);
            }
        } catch {}
    }

    function settle(uint256 seed, uint8 pattern, uint8 presence) external {
        if (jobs.length == 0) return;
        _settleJobs(_assignedJobs(seed, 1 + (seed >> 32) % 3), pattern, presence);
    }

    function reclaim(uint256 seed) external {
        if (jobs.length == 0) return;
        bytes32 jobId = jobs[seed % jobs.length];
        (uint8 status,,) = market.getJob(jobId);
        if (status != 1 && status != 2) return;
        JobMarket.Terms memory t = terms[jobId];
        uint256 deadline = status == 1 ? t.assignDeadline : t.settleDeadline;
        if (block.timestamp <= deadline) vm.warp(deadline + 1 + seed % 1000);
        vm.prank(t.requester);
        try market.reclaim(jobId, t, assignedTo[jobId], pricesOf[jobId]) {}
        catch {
            // refused only because agreed work was revealed on chain: then anyone finalizes
            try market.finalize(jobId, t, assignedTo[jobId], pricesOf[jobId]) {
                _bookOnChain(jobId);
            } catch {
                reclaimFailed = true;
            }
        }
    }

    /// Assigned providers of one job commit and reveal "good" on chain themselves.
    function revealOnChain(uint256 seed, uint8 who) external {
        if (jobs.length == 0) return;
        bytes32 jobId = jobs[seed % jobs.length];
        (uint8 status,,) = market.getJob(jobId);
        JobMarket.Terms memory t = terms[jobId];
        if (status != 2 || block.timestamp > t.commitDeadline) return;
        address[] memory list = assignedTo[jobId];
        for (uint256 i; i < list.length; ++i) {
            if ((who >> i) & 1 == 1) continue;
            bytes32 salt = bytes32(seed);
            vm.prank(list[i]);
            try market.commitOnChain(
                jobId, t, list, pricesOf[jobId], i, keccak256(abi.encodePacked(keccak256("good"), salt))
            ) {
                vm.prank(list[i]);
                market.revealOnChain(jobId, t, list, pricesOf[jobId], i, keccak256("good"), salt);
            } catch {}
        }
    }

    function cancel(uint256 seed) external {
        if (jobs.length == 0) return;
        bytes32 jobId = jobs[seed % jobs.length];
        JobMarket.Terms memory t = terms[jobId];
        vm.prank(t.requester);
        try market.cancel(jobId, t) {} catch {}
    }

    function claim(uint256 seed) external {
        address[] memory all = this.parties();
        address who = all[seed % all.length];
        uint256 before = token.balanceOf(who);
        vm.prank(who);
        try market.claim() {
            claimedBy[who] += token.balanceOf(who) - before;
        } catch {}
    }

    function unbond(uint256 seed, uint64 amount) external {
        address who = vm.addr(providerKeys[seed % providerKeys.length]);
        (,,,, uint64 free,,,,,) = market.providerInfo(who);
        if (free == 0) return;
        vm.prank(who);
        market.requestUnbond(uint64(bound(amount, 1, free)));
    }

    function withdraw(uint256 seed) external {
        address who = vm.addr(providerKeys[seed % providerKeys.length]);
        vm.prank(who);
        try market.withdraw() {} catch {}
    }

    function stake(uint256 seed, uint64 amount) external {
        address who = vm.addr(providerKeys[seed % providerKeys.length]);
        amount = uint64(bound(amount, 1, 100e6));
        vm.prank(who);
        token.approve(address(market), amount);
        vm.prank(who);
        market.stake(amount);
    }

    function warp(uint256 secs) external {
        // mostly short steps inside job deadlines, now and then a long one past them
        vm.warp(block.timestamp + (secs % 8 == 0 ? bound(secs, 1, 2 days) : bound(secs, 1, 600)));
    }

    // ----------------------------------------------------------------- internals

    function _assignedJobs(uint256 seed, uint256 want) internal view returns (bytes32[] memory picked) {
        bytes32[] memory tmp = new bytes32[](want);
        uint256 k;
        for (uint256 i; i < jobs.length && k < want; ++i) {
            bytes32 jobId = jobs[(seed + i) % jobs.length];
            (uint8 status,,) = market.getJob(jobId);
            if (status == 2 && block.timestamp <= terms[jobId].settleDeadline) tmp[k++] = jobId;
        }
        picked = new bytes32[](k);
        for (uint256 i; i < k; ++i) {
            picked[i] = tmp[i];
        }
    }

    function _settleJobs(bytes32[] memory picked, uint8 pattern, uint8 presence) internal {
        if (picked.length == 0) return;
        JobMarket.Settlement[] memory batch = new JobMarket.Settlement[](picked.length);
        for (uint256 j; j < picked.length; ++j) {
            batch[j] = _build(picked[j], pattern, presence);
        }
        address coordinator = vm.addr(coordinatorKey);
        vm.prank(coordinator);
        try market.settleBatch(batch) {
            for (uint256 j; j < picked.length; ++j) {
                _book(picked[j], batch[j]);
            }
        } catch {}
    }

    function _build(bytes32 jobId, uint8 pattern, uint8 presence)
        internal
        view
        returns (JobMarket.Settlement memory s)
    {
        address[] memory list = assignedTo[jobId];
        JobMarket.Signed[] memory signed = new JobMarket.Signed[](list.length);
        for (uint256 i; i < list.length; ++i) {
            if (presence < 32 && i == 1) continue; // now and then a provider stays silent
            // mostly agreement or one dissenter; sometimes arbitrary splits
            bool bad = pattern % 4 == 1 ? i == 0 : pattern % 4 == 2 ? i == list.length - 1
                : pattern % 4 == 3 ? (pattern >> (2 + i)) & 1 == 1 : false;
            bytes32 result = bad ? keccak256("bad") : keccak256("good");
            uint256 key = _keyOf(list[i]);
            bytes32 structHash = keccak256(
                abi.encode(market.REVEAL_TYPEHASH(), jobId, list[i], result, bytes32(i))
            );
            bytes32 digest =
                keccak256(abi.encodePacked("\x19\x01", market.domainSeparator(), structHash));
            (uint8 v, bytes32 r, bytes32 sig) = vm.sign(key, digest);
            signed[i] = JobMarket.Signed({kind: 1, value: result, salt: bytes32(i), v: v, r: r, s: sig});
        }
        s = JobMarket.Settlement({
            jobId: jobId,
            terms: terms[jobId],
            providers: list,
            prices: pricesOf[jobId],
            signed: signed,
            winners: 0
        });
    }

    function _bookOnChain(bytes32 jobId) internal {
        address[] memory list = assignedTo[jobId];
        for (uint256 i; i < list.length; ++i) {
            (, , bool revealed) = market.onChainEntry(jobId, i);
            if (revealed) expectedEarned[list[i]] += pricesOf[jobId][i]; // all revealed "good"
        }
        ++settledJobs;
    }

    /// Books the outcome the rules demand, computed independently of the contract.
    function _book(bytes32 jobId, JobMarket.Settlement memory s) internal {
        // an entry the coordinator left empty counts its provider's own on-chain reveal
        for (uint256 i; i < s.signed.length; ++i) {
            (, bytes32 result, bool revealed) = market.onChainEntry(jobId, i);
            if (s.signed[i].kind == 0 && revealed) {
                s.signed[i].kind = 1;
                s.signed[i].value = result;
            }
        }
        uint256 good;
        uint256 bad;
        for (uint256 i; i < s.signed.length; ++i) {
            if (s.signed[i].kind == 0) continue;
            if (s.signed[i].value == keccak256("good")) ++good;
            else ++bad;
        }
        bytes32 winner = good >= bad ? keccak256("good") : keccak256("bad");
        for (uint256 i; i < s.signed.length; ++i) {
            if (s.signed[i].kind == 0) continue;
            if (s.signed[i].value == winner) {
                expectedEarned[s.providers[i]] += s.prices[i];
            } else {
                expectedSlashed += uint256(s.prices[i]) * factor;
            }
        }
        settledFees += terms[jobId].fee;
        ++settledJobs;
    }

    function _keyOf(address who) internal view returns (uint256) {
        for (uint256 i; i < providerKeys.length; ++i) {
            if (vm.addr(providerKeys[i]) == who) return providerKeys[i];
        }
        revert("unknown provider");
    }
}

interface IForgeTargets {
    function targetContracts() external view returns (address[] memory);
}

contract MarketInvariants is Fixture {
    Handler internal handler;
    address[] internal targets;

    function setUp() public override {
        super.setUp();
        uint256[] memory requesters = new uint256[](2);
        requesters[0] = requesterKey;
        requesters[1] = 0xB0B;
        token.mint(vm.addr(0xB0B), 1_000_000e6);
        uint256[] memory provs = new uint256[](4);
        for (uint256 i; i < 4; ++i) {
            provs[i] = providerKeys[i];
        }
        handler = new Handler(market, token, coordinatorKey, requesters, provs);
        targets.push(address(handler));
    }

    /// Read by forge: only the handler is called during invariant runs.
    function targetContracts() public view returns (address[] memory) {
        return targets;
    }

    function _sumStakesAndCredits() internal view returns (uint256 sum) {
        address[] memory all = handler.parties();
        for (uint256 i; i < all.length; ++i) {
            (uint256 owed,,) = market.accountOf(all[i]);
            (,, uint64 stake_,,, uint64 earned,,, uint64 unbonding,) = market.providerInfo(all[i]);
            sum += owed + stake_ + earned + unbonding;
        }
        // providers 4 and 5 of the fixture are staked but never used by the handler
        for (uint256 i = 4; i < providerAddrs.length; ++i) {
            (,, uint64 stake_,,,,,, uint64 unbonding,) = market.providerInfo(providerAddrs[i]);
            sum += stake_ + unbonding;
        }
    }

    function invariant_fundsConserved() public view {
        assertEq(
            token.balanceOf(address(market)),
            handler.openEscrow() + _sumStakesAndCredits(),
            "market balance == open escrows + stakes + owed"
        );
    }

    function invariant_reclaimAlwaysPossibleAfterDeadline() public view {
        assertTrue(!handler.reclaimFailed(), "a reclaim after the deadline failed");
    }

    function invariant_providersPaidExactlyTheirSignedMajorityResults() public view {
        address[] memory ps = handler.providers();
        for (uint256 i; i < ps.length; ++i) {
            (,,,,, uint64 earned,,,,) = market.providerInfo(ps[i]);
            assertEq(
                uint256(earned) + handler.claimedBy(ps[i]),
                handler.expectedEarned(ps[i]),
                "provider paid once per signed majority result, never otherwise"
            );
        }
    }

    function invariant_coordinatorGetsOnlyFees() public view {
        (, uint256 lifetime,) = market.accountOf(coordinator);
        assertEq(lifetime, handler.settledFees(), "coordinator credited exactly the fees");
    }

    function invariant_lockedStakeMatchesOpenAssignments() public view {
        address[] memory ps = handler.providers();
        uint256 locked;
        for (uint256 i; i < ps.length; ++i) {
            (,,, uint64 l,,,,,,) = market.providerInfo(ps[i]);
            locked += l;
        }
        assertEq(locked, handler.lockedByOpenJobs(), "locked stake == open assignments");
    }
}



