// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Signer, Fixture} from "./Fixture.sol";
import {TestBase} from "./Base.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {MarketBase} from "../src/MarketBase.sol";
import {JobMarketExt} from "../src/JobMarketExt.sol";

/// Drives the market through commit-only, reveal-only, split, withheld and tie-breaker
/// states: separate on-chain commit and reveal actions, settlement (through settleBatch, so
/// an invalid settlement is skipped, not reverted), finalize / reclaim, abort, claims and time
/// warps. Every action only makes calls it expects to succeed; the counters prove progress.
contract Handler is Signer {
    bytes32 internal constant X = keccak256("honest");
    bytes32 internal constant Y = keccak256("cheat");

    JobMarket internal market;
    TestUSD internal token;
    uint256 internal coordinatorKey;
    address internal coordinator;
    uint256 internal requesterKey;
    address internal requester;
    uint256[] internal providerKeys; // 0..2 honest, 3 cheats on some jobs

    bytes32[] public jobs;
    mapping(bytes32 => MarketBase.Terms) internal terms;
    mapping(bytes32 => MarketBase.Seat[]) internal seats;
    mapping(bytes32 => bool) internal cheatJob;
    mapping(bytes32 => mapping(uint256 => bool)) internal committed;
    mapping(bytes32 => mapping(uint256 => bool)) internal revealed;

    // progress counters
    uint256 public created;
    uint256 public settled;
    uint256 public skipped;
    uint256 public finalized;
    uint256 public reclaimed;
    uint256 public aborted;
    uint256 public onChainCommits;
    uint256 public revealOnly; // reveals without an on-chain commit
    uint256 public commitOnly; // jobs concluded with an on-chain commit never revealed
    uint256 public splits; // settlements carrying both results
    uint256 public withheldSlashes;
    uint256 public tieBreakers;
    bool public honestSlashed;
    bool public exitFailed;

    constructor(JobMarket market_, TestUSD token_, uint256 coordinatorKey_, uint256 requesterKey_, uint256[] memory providerKeys_) {
        market = market_;
        token = token_;
        coordinatorKey = coordinatorKey_;
        coordinator = vm.addr(coordinatorKey_);
        requesterKey = requesterKey_;
        requester = vm.addr(requesterKey_);
        providerKeys = providerKeys_;
    }

    function _market() internal view override returns (JobMarket) {
        return market;
    }

    function jobCount() external view returns (uint256) {
        return jobs.length;
    }

    function openEscrow() external view returns (uint256 sum) {
        for (uint256 i; i < jobs.length; ++i) {
            (uint8 status,,) = market.getJob(jobs[i]);
            if (status == 1 || status == 2) {
                MarketBase.Terms memory t = terms[jobs[i]];
                sum += (uint256(t.redundancy) + 2) * t.priceCap + t.fee;
            }
        }
    }

    function termsOf(bytes32 jobId) external view returns (MarketBase.Terms memory) {
        return terms[jobId];
    }

    function seatsOf(bytes32 jobId) external view returns (MarketBase.Seat[] memory) {
        return seats[jobId];
    }

    // ---------------------------------------------------------------- actions

    function create(uint256 seed) external {
        uint8 r = uint8(1 + seed % 3);
        uint8 mode = seed % 5 == 0 ? 1 : 0;
        uint64 cap = uint64(10_000 + (seed >> 8) % 2_000_000);
        uint64 fee = uint64((seed >> 40) % 100_000);
        uint32 spare = uint32(block.timestamp + 1800);
        MarketBase.JobParams memory p = MarketBase.JobParams({
            specDigest: keccak256("spec"),
            specCid: bytes("bafkreispec"),
            coordinator: coordinator,
            redundancy: r,
            mode: mode,
            priceCap: cap,
            fee: fee,
            timeoutMs: 1_000_000,
            assignDeadline: uint32(block.timestamp + 600),
            commitWindow: 1200,
            revealWindow: 600,
            spareDeadline: spare,
            settleDeadline: spare + 1800
        });
        vm.startPrank(requester);
        token.approve(address(market), (uint256(r) + 2) * cap + fee);
        MarketBase.PermitSig memory none;
        bytes32 jobId = market.createJob(p, none);
        vm.stopPrank();
        jobs.push(jobId);
        terms[jobId] = MarketBase.Terms(
            requester, coordinator, r, mode, cap, fee, p.timeoutMs, p.assignDeadline,
            p.commitWindow, p.revealWindow, p.spareDeadline, p.settleDeadline
        );
        cheatJob[jobId] = (seed >> 100) % 2 == 0;
        ++created;
    }

    function assign(uint256 seed, uint8 count) external {
        bytes32 jobId = _pick(seed, 1);
        if (jobId == 0 || block.timestamp > terms[jobId].assignDeadline) return;
        uint256 n = 1 + count % (terms[jobId].redundancy + 1); // primaries, maybe a checker
        if (n > 4) n = 4;
        _seat(jobId, seed, n);
    }

    /// A tie-breaker / replacement seated after the first assignment.
    function spare(uint256 seed) external {
        bytes32 jobId = _pick(seed, 2);
        if (jobId == 0) return;
        MarketBase.Terms memory t = terms[jobId];
        uint256 have = seats[jobId].length;
        if (have >= 4 || have >= uint256(t.redundancy) + 2) return;
        if (block.timestamp > t.spareDeadline || block.timestamp > _revealOpen(jobId)) return;
        _seat(jobId, seed, 1);
        ++tieBreakers;
    }

    function commit(uint256 seed, uint8 seatSeed) external {
        bytes32 jobId = _pick(seed, 2);
        if (jobId == 0) return;
        uint256 i = seatSeed % seats[jobId].length;
        MarketBase.Seat memory s = seats[jobId][i];
        if (committed[jobId][i] || block.timestamp > uint256(s.assignedAt) + terms[jobId].commitWindow) {
            return;
        }
        (bytes32 result, uint64 rt) = _resultOf(jobId, i);
        vm.prank(s.provider);
        JobMarketExt(address(market)).commitOnChain(jobId, terms[jobId], seats[jobId], uint8(i), _commitHash(jobId, s.provider, result, rt, _saltOf(jobId, i)));
        committed[jobId][i] = true;
        ++onChainCommits;
    }

    function reveal(uint256 seed, uint8 seatSeed, bool withReceipt, bool byStranger) external {
        bytes32 jobId = _pick(seed, 2);
        if (jobId == 0) return;
        uint256 i = seatSeed % seats[jobId].length;
        uint256 open = _revealOpen(jobId);
        if (revealed[jobId][i] || block.timestamp <= open || block.timestamp > open + terms[jobId].revealWindow) {
            return;
        }
        MarketBase.Seat memory s = seats[jobId][i];
        (bytes32 result, uint64 rt) = _resultOf(jobId, i);
        bytes32 salt = _saltOf(jobId, i);
        bytes memory receipt;
        if (withReceipt && !committed[jobId][i]) {
            receipt = _sigBytes(
                coordinatorKey,
                keccak256(abi.encode(RECEIPT_TYPEHASH, jobId, s.provider, uint8(i), _commitHash(jobId, s.provider, result, rt, salt)))
            );
        }
        bytes memory sig = byStranger ? _revealSig(_keyOf(s.provider), jobId, result, rt, salt) : bytes("");
        MarketBase.Terms memory t = terms[jobId];
        MarketBase.Seat[] memory ss = seats[jobId];
        if (!byStranger) vm.prank(s.provider);
        JobMarketExt(address(market)).revealOnChain(jobId, t, ss, uint8(i), result, rt, salt, sig, receipt);
        revealed[jobId][i] = true;
        if (!committed[jobId][i]) ++revealOnly;
    }

    /// The coordinator settles with a per-seat pattern: 0 none, 1 and 3 reveal, 2 commit.
    function settle(uint256 seed, uint256 pattern) external {
        bytes32 jobId = _pick(seed, 2);
        if (jobId == 0) return;
        MarketBase.Terms memory t = terms[jobId];
        if (block.timestamp > t.settleDeadline) return;
        uint256 n = seats[jobId].length;
        MarketBase.Signed[] memory signed = new MarketBase.Signed[](n);
        bool sawX;
        bool sawY;
        for (uint256 i; i < n; ++i) {
            uint256 kind = (pattern >> (2 * i)) & 3;
            address who = seats[jobId][i].provider;
            (bytes32 result, uint64 rt) = _resultOf(jobId, i);
            bytes32 salt = _saltOf(jobId, i);
            if (kind == 1 || kind == 3) {
                signed[i] = _revealEntry(_keyOf(who), jobId, result, rt, salt);
                if (result == X) sawX = true;
                else sawY = true;
            } else if (kind == 2) {
                signed[i] = _commitEntry(_keyOf(who), jobId, _commitHash(jobId, who, result, rt, salt));
            }
        }
        MarketBase.Settlement[] memory list = new MarketBase.Settlement[](1);
        list[0] = MarketBase.Settlement(jobId, t, seats[jobId], signed, 0);
        if (t.mode == 1) list[0].winners = pattern >> 64 & ((1 << n) - 1);
        uint256[] memory before = _slashCounts(jobId);
        vm.prank(coordinator);
        market.settleBatch(list);
        (uint8 status,,) = market.getJob(jobId);
        if (status == 3) {
            ++settled;
            if (sawX && sawY) ++splits;
            _afterConclusion(jobId, before, signed);
        } else {
            ++skipped;
        }
    }

    /// After the settle deadline exactly one of finalize / reclaim must succeed.
    function exit(uint256 seed) external {
        bytes32 jobId = _pick(seed, 3);
        if (jobId == 0) return;
        MarketBase.Terms memory t = terms[jobId];
        (uint8 status,,) = market.getJob(jobId);
        uint256 deadline = status == 1 ? t.assignDeadline : t.settleDeadline;
        if (block.timestamp <= deadline) return;
        MarketBase.Seat[] memory ss = seats[jobId];
        uint256[] memory before = _slashCounts(jobId);
        if (status == 2) {
            try JobMarketExt(address(market)).finalize(jobId, t, ss) {
                ++finalized;
                MarketBase.Signed[] memory none = new MarketBase.Signed[](ss.length);
                _afterConclusion(jobId, before, none);
                return;
            } catch {}
        }
        vm.prank(requester);
        try JobMarketExt(address(market)).reclaim(jobId, t, ss) {
            ++reclaimed;
        } catch {
            exitFailed = true;
        }
    }

    function abort(uint256 seed) external {
        bytes32 jobId = _pick(seed, 3);
        if (jobId == 0 || seed % 7 != 0) return;
        for (uint256 i; i < seats[jobId].length; ++i) {
            if (committed[jobId][i] || revealed[jobId][i]) return;
        }
        vm.prank(coordinator);
        JobMarketExt(address(market)).abort(jobId, terms[jobId], seats[jobId]);
        ++aborted;
    }

    function claim(uint256 seed) external {
        address who = seed % 5 == 4 ? requester : vm.addr(providerKeys[seed % 4]);
        (uint256 owed,,) = market.accountOf(who);
        (,,,,, uint64 earned,,,,) = JobMarketExt(address(market)).providerInfo(who);
        if (owed + earned == 0) return;
        vm.prank(who);
        market.claim();
    }

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 1500));
    }

    // ------------------------------------------------------------ helpers

    function _resultOf(bytes32 jobId, uint256 i) internal view returns (bytes32, uint64) {
        address who = seats[jobId][i].provider;
        bool cheat = who == vm.addr(providerKeys[3]) && cheatJob[jobId];
        return (cheat ? Y : X, uint64(500 + 1000 * i));
    }

    function _seat(bytes32 jobId, uint256 seed, uint256 n) internal {
        MarketBase.Seat[] memory existing = seats[jobId];
        MarketBase.Offer[] memory offers = new MarketBase.Offer[](n);
        uint64 price = _priceFor(jobId, seed);
        uint256 k;
        for (uint256 step; step < 4 && k < n; ++step) {
            uint256 idx = (seed % 4 + step) % 4;
            if (_taken(existing, offers, k, vm.addr(providerKeys[idx]))) continue;
            offers[k] = _offerOf(jobId, idx, existing.length + k, price);
            ++k;
        }
        if (k < n) return;
        MarketBase.Terms memory t = terms[jobId];
        vm.prank(coordinator);
        market.assign(jobId, t, existing, offers);
        for (uint256 j; j < n; ++j) {
            seats[jobId].push(MarketBase.Seat(offers[j].provider, offers[j].price, offers[j].ratePerHour, uint32(block.timestamp)));
        }
    }

    function _taken(MarketBase.Seat[] memory existing, MarketBase.Offer[] memory offers, uint256 k, address who)
        internal
        pure
        returns (bool)
    {
        for (uint256 j; j < existing.length; ++j) {
            if (existing[j].provider == who) return true;
        }
        for (uint256 j; j < k; ++j) {
            if (offers[j].provider == who) return true;
        }
        return false;
    }

    function _priceFor(bytes32 jobId, uint256 seed) internal view returns (uint64 price) {
        uint64 cap = terms[jobId].priceCap;
        price = uint64(1_000 + (seed >> 16) % cap);
        if (price > cap) price = cap;
    }

    function _offerOf(bytes32 jobId, uint256 idx, uint256 seat, uint64 price)
        internal
        view
        returns (MarketBase.Offer memory)
    {
        return _offer(
            providerKeys[idx], jobId, terms[jobId], seat, price, uint64(1_000_000 + idx), uint32(block.timestamp + 60)
        );
    }

    function _revealOpen(bytes32 jobId) internal view returns (uint256 latest) {
        MarketBase.Seat[] memory ss = seats[jobId];
        for (uint256 i; i < ss.length; ++i) {
            if (ss[i].assignedAt > latest) latest = ss[i].assignedAt;
        }
        latest += terms[jobId].commitWindow;
    }

    /// A job of the wanted status (1 open, 2 assigned, 3 open or assigned), or 0.
    function _pick(uint256 seed, uint256 want) internal view returns (bytes32) {
        uint256 n = jobs.length;
        for (uint256 k; k < n; ++k) {
            bytes32 jobId = jobs[(seed % n + k) % n];
            (uint8 status,,) = market.getJob(jobId);
            if (want == 3 ? (status == 1 || status == 2) : status == want) return jobId;
        }
        return 0;
    }

    function _slashCounts(bytes32 jobId) internal view returns (uint256[] memory c) {
        MarketBase.Seat[] memory ss = seats[jobId];
        c = new uint256[](ss.length);
        for (uint256 i; i < ss.length; ++i) {
            (,,,,,,, uint24 slashed,,) = JobMarketExt(address(market)).providerInfo(ss[i].provider);
            c[i] = slashed;
        }
    }

    function _afterConclusion(bytes32 jobId, uint256[] memory before, MarketBase.Signed[] memory signed) internal {
        MarketBase.Seat[] memory ss = seats[jobId];
        for (uint256 i; i < ss.length; ++i) {
            (,,,,,,, uint24 slashed,,) = JobMarketExt(address(market)).providerInfo(ss[i].provider);
            bool wasSlashed = slashed > before[i];
            (bytes32 result,) = _resultOf(jobId, i);
            bool didReveal = revealed[jobId][i] || signed[i].kind == 1;
            if (wasSlashed && result == X && didReveal) honestSlashed = true;
            if (committed[jobId][i] && !revealed[jobId][i]) ++commitOnly;
            if (wasSlashed && !didReveal) ++withheldSlashes;
        }
    }

    function _keyOf(address who) internal view returns (uint256) {
        for (uint256 i; i < providerKeys.length; ++i) {
            if (vm.addr(providerKeys[i]) == who) return providerKeys[i];
        }
        revert("unknown provider");
    }
}

/// Runs finalize (which = 0) or reclaim (1) for a job at its settle deadline + 1 and
/// reverts with the outcome, so nothing persists. Not a fuzz target.
contract Prober is TestBase {
    error ProbeResult(bool ok);

    function probe(JobMarket market, Handler handler, bytes32 jobId, uint256 which) external {
        MarketBase.Terms memory t = handler.termsOf(jobId);
        MarketBase.Seat[] memory ss = handler.seatsOf(jobId);
        vm.warp(uint256(t.settleDeadline) + 1);
        bool ok;
        if (which == 0) {
            try JobMarketExt(address(market)).finalize(jobId, t, ss) {
                ok = true;
            } catch {}
        } else {
            vm.prank(t.requester);
            try JobMarketExt(address(market)).reclaim(jobId, t, ss) {
                ok = true;
            } catch {}
        }
        revert ProbeResult(ok);
    }
}

contract MarketInvariants is Fixture {
    Prober internal prober;
    Handler internal handler;
    address[] internal targets;

    function setUp() public override {
        super.setUp();
        uint256[] memory provs = new uint256[](4);
        for (uint256 i; i < 4; ++i) {
            provs[i] = providerKeys[i];
        }
        handler = new Handler(market, token, coordinatorKey, requesterKey, provs);
        prober = new Prober();
        targets.push(address(handler));
    }

    function targetContracts() public view returns (address[] memory) {
        return targets;
    }

    function _held() internal view returns (uint256 sum) {
        for (uint256 i; i < providerAddrs.length; ++i) {
            (,, uint64 stake_,,, uint64 earned,,, uint64 unbonding,) = JobMarketExt(address(market)).providerInfo(providerAddrs[i]);
            (uint256 owed,,) = market.accountOf(providerAddrs[i]);
            sum += uint256(stake_) + earned + unbonding + owed;
        }
        (uint256 o1,,) = market.accountOf(requester);
        (uint256 o2,,) = market.accountOf(coordinator);
        (uint64 bond, uint64 unb,) = JobMarketExt(address(market)).coordinatorInfo(coordinator);
        sum += o1 + o2 + bond + unb + market.burned();
    }

    function invariant_fundsConserved() public view {
        assertEq(
            token.balanceOf(address(market)),
            handler.openEscrow() + _held(),
            "balance == escrows + stakes + unbonding + bonds + owed + earned + burned"
        );
    }

    /// Every open job has exactly one exit once its last deadline passed: finalize xor reclaim.
    function invariant_exactlyOneExit() public {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            bytes32 jobId = handler.jobs(i);
            (uint8 status,,) = market.getJob(jobId);
            if (status != 1 && status != 2) continue;
            bool f = _probe(jobId, 0);
            bool r = _probe(jobId, 1);
            if (status == 1) {
                assertTrue(!f && r, "an unassigned job is reclaimable");
            } else {
                assertTrue(f != r, "exactly one of finalize / reclaim succeeds");
            }
        }
    }

    function invariant_honestRevealNeverSlashed() public view {
        assertTrue(!handler.honestSlashed(), "an honest provider that revealed was slashed");
    }

    function invariant_exitsNeverFail() public view {
        assertTrue(!handler.exitFailed(), "neither finalize nor reclaim succeeded");
    }

    /// End of each run: past every deadline every open job must exit (finalize xor
    /// reclaim), and the run must have concluded jobs.
    function afterInvariant() public {
        vm.warp(block.timestamp + 200 days);
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            handler.exit(i);
        }
        for (uint256 i; i < n; ++i) {
            (uint8 status,,) = market.getJob(handler.jobs(i));
            assertTrue(status >= 3, "every job exits");
        }
        assertTrue(!handler.exitFailed(), "an exit failed");
        if (n != 0) {
            assertTrue(
                handler.settled() + handler.finalized() + handler.reclaimed() + handler.aborted() > 0,
                "jobs concluded in the run"
            );
        }
        invariant_fundsConserved();
    }

    function _probe(bytes32 jobId, uint256 which) internal returns (bool ok) {
        uint256 now_ = block.timestamp;
        try prober.probe(market, handler, jobId, which) {} catch (bytes memory data) {
            ok = keccak256(data) == keccak256(abi.encodeWithSelector(Prober.ProbeResult.selector, true));
        }
        vm.warp(now_);
    }

    /// Attack 12: a scripted run of the handler reaches every state the fuzzer must reach
    /// (commit-only, reveal-only, split, withheld, tie-breaker), with separate commit and
    /// reveal actions, on-chain and settlement paths.
    function test_attack12_handlerReachesEveryState() public {
        // job 0: r = 1, provider 3 cheats and withholds, a tie-breaker, finalize
        handler.create(6);
        handler.assign(3, 1); // seats providers 3 and 0
        handler.commit(0, 0);
        handler.commit(0, 1);
        handler.warp(1199); // +1200: at the reveal opening, past the assign deadline
        handler.spare(1); // tie-breaker
        handler.commit(0, 2);
        handler.warp(1300);
        handler.reveal(0, 1, false, false);
        handler.reveal(0, 2, false, true); // posted by a stranger with the provider's signature
        handler.warp(1200);
        handler.exit(0); // finalize: 2 votes of quorum 3, the withheld cheater is slashed
        // job 1: r = 2, reveal-only with a receipt, then an early settlement
        handler.create(6 + (1 << 100));
        handler.assign(3, 1);
        handler.warp(1201);
        handler.reveal(1, 0, true, false);
        handler.settle(1, 1 << 2);
        // job 2: r = 1, a split settled by the tie-breaker's vote
        handler.create(6);
        handler.assign(3, 1);
        handler.spare(2);
        handler.warp(1200);
        handler.settle(2, 1 | (1 << 2) | (1 << 4));
        assertTrue(handler.finalized() > 0, "finalized");
        assertEq(handler.settled(), 2, "settled");
        assertTrue(handler.tieBreakers() >= 2, "tie-breakers seated");
        assertTrue(handler.onChainCommits() > 0, "on-chain commits");
        assertTrue(handler.revealOnly() > 0, "reveal-only");
        assertTrue(handler.commitOnly() > 0, "commit-only");
        assertTrue(handler.withheldSlashes() > 0, "withheld slashed");
        assertTrue(handler.splits() > 0, "split");
        assertTrue(!handler.honestSlashed(), "honest never slashed");
        invariant_fundsConserved();
        invariant_exactlyOneExit();
    }
}
