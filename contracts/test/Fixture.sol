// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {TestBase} from "./Base.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {MarketBase} from "../src/MarketBase.sol";
import {JobMarketExt} from "../src/JobMarketExt.sol";
import {IERC20Permit} from "../src/IERC20Permit.sol";

/// Signing helpers shared by the unit tests and the invariant handler.
abstract contract Signer is TestBase {
    bytes32 internal constant ACCEPT_TYPEHASH = keccak256(
        "Accept(bytes32 jobId,address provider,uint8 seat,uint64 price,uint64 ratePerHour,bytes32 termsHash,uint32 expiry)"
    );
    bytes32 internal constant COMMIT_TYPEHASH =
        keccak256("Commit(bytes32 jobId,address provider,bytes32 commitHash)");
    bytes32 internal constant RECEIPT_TYPEHASH =
        keccak256("CommitReceipt(bytes32 jobId,address provider,uint8 seat,bytes32 commitHash)");
    bytes32 internal constant REVEAL_TYPEHASH = keccak256(
        "Reveal(bytes32 jobId,address provider,bytes32 result,uint64 runtimeMs,bytes32 salt)"
    );
    bytes32 internal constant PERMIT_TYPEHASH = keccak256(
        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    );

    function _market() internal view virtual returns (JobMarket);

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _market().domainSeparator(), structHash));
    }

    function _commitHash(bytes32 jobId, address provider, bytes32 result, uint64 runtimeMs, bytes32 salt)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(jobId, provider, result, runtimeMs, salt));
    }

    function _saltOf(bytes32 jobId, uint256 seat) internal pure returns (bytes32) {
        return keccak256(abi.encode("salt", jobId, seat));
    }

    function _offer(
        uint256 key,
        bytes32 jobId,
        MarketBase.Terms memory t,
        uint256 seat,
        uint64 price,
        uint64 rate,
        uint32 expiry
    ) internal view returns (MarketBase.Offer memory o) {
        address who = vm.addr(key);
        bytes32 structHash = keccak256(
            abi.encode(
                ACCEPT_TYPEHASH,
                jobId,
                who,
                uint8(seat),
                price,
                rate,
                keccak256(abi.encode(t)),
                expiry
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        o = MarketBase.Offer({
            provider: who, price: price, ratePerHour: rate, expiry: expiry, v: v, r: r, s: s
        });
    }

    function _revealEntry(uint256 key, bytes32 jobId, bytes32 result, uint64 runtimeMs, bytes32 salt)
        internal
        view
        returns (MarketBase.Signed memory e)
    {
        bytes32 structHash = keccak256(
            abi.encode(REVEAL_TYPEHASH, jobId, vm.addr(key), result, runtimeMs, salt)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        e = MarketBase.Signed({
            kind: 1, value: result, runtimeMs: runtimeMs, salt: salt, v: v, r: r, s: s
        });
    }

    function _commitEntry(uint256 key, bytes32 jobId, bytes32 commitHash)
        internal
        view
        returns (MarketBase.Signed memory e)
    {
        bytes32 structHash =
            keccak256(abi.encode(COMMIT_TYPEHASH, jobId, vm.addr(key), commitHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        e = MarketBase.Signed({
            kind: 2, value: commitHash, runtimeMs: 0, salt: bytes32(0), v: v, r: r, s: s
        });
    }

    /// 65-byte r || s || v over an EIP-712 struct hash.
    function _sigBytes(uint256 key, bytes32 structHash) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        return abi.encodePacked(r, s, v);
    }

    function _revealSig(uint256 key, bytes32 jobId, bytes32 result, uint64 runtimeMs, bytes32 salt)
        internal
        view
        returns (bytes memory)
    {
        return _sigBytes(
            key,
            keccak256(abi.encode(REVEAL_TYPEHASH, jobId, vm.addr(key), result, runtimeMs, salt))
        );
    }

    function _receiptSig(uint256 coordKey, bytes32 jobId, address provider, uint256 seat, bytes32 commitHash)
        internal
        view
        returns (bytes memory)
    {
        return _sigBytes(
            coordKey,
            keccak256(abi.encode(RECEIPT_TYPEHASH, jobId, provider, uint8(seat), commitHash))
        );
    }
}

/// Deploys the token and market and drives them with known keys.
abstract contract Fixture is Signer {
    uint64 internal constant MIN_STAKE = 50e6;
    uint32 internal constant UNBONDING = 1 days;
    uint64 internal constant FACTOR = 5;
    uint64 internal constant MIN_PRICE = 1_000;
    uint64 internal constant MIN_BOND = 100e6;
    uint32 internal constant COORD_DELAY = 91 days;
    uint64 internal constant CAP = 2_500_000;
    uint64 internal constant FEE = 100_000;
    uint64 internal constant RATE = 3_600_000; // 1 unit per ms
    uint64 internal constant TIMEOUT = 1_000_000;
    uint32 internal constant COMMIT_WINDOW = 1200;
    uint32 internal constant REVEAL_WINDOW = 600;
    uint256 internal constant T0 = 1_700_000_000;

    TestUSD internal token;
    JobMarket internal market;

    uint256 internal requesterKey = 0xA11CE;
    uint256 internal coordinatorKey = 0xC00D;
    address internal requester;
    address internal coordinator;
    uint256[] internal providerKeys;
    address[] internal providerAddrs;
    mapping(bytes32 => MarketBase.Terms) internal termsOf;
    mapping(bytes32 => MarketBase.Seat[]) internal seatsOf_;

    function _market() internal view override returns (JobMarket) {
        return market;
    }

    function setUp() public virtual {
        vm.warp(T0);
        token = new TestUSD();
        market = new JobMarket(
            IERC20Permit(address(token)), MIN_STAKE, UNBONDING, FACTOR, MIN_PRICE, MIN_BOND, COORD_DELAY
        );
        requester = vm.addr(requesterKey);
        coordinator = vm.addr(coordinatorKey);
        token.mint(requester, 1_000_000e6);
        token.mint(coordinator, 1_000e6);
        vm.startPrank(coordinator);
        token.approve(address(market), MIN_BOND);
        JobMarketExt(address(market)).bondCoordinator(MIN_BOND, 0, 0, 0, 0);
        vm.stopPrank();
        for (uint256 i; i < 6; ++i) {
            uint256 key = 0x1001 + i;
            providerKeys.push(key);
            address who = vm.addr(key);
            providerAddrs.push(who);
            token.mint(who, 10_000e6);
            vm.prank(who);
            JobMarketExt(address(market)).register(i >= 4 ? 7 : 0); // providers 4 and 5 share operator group 7
            _stakeAs(i, 1_000e6);
        }
    }

    function _stakeAs(uint256 index, uint64 amount) internal {
        address who = providerAddrs[index];
        vm.startPrank(who);
        token.approve(address(market), amount);
        JobMarketExt(address(market)).stake(amount);
        vm.stopPrank();
    }

    function _params(uint8 redundancy, uint8 mode, uint64 cap, uint64 fee)
        internal
        view
        returns (MarketBase.JobParams memory)
    {
        uint32 assignDl = uint32(block.timestamp + 600);
        uint32 spareDl = uint32(block.timestamp + 1800);
        return MarketBase.JobParams({
            specDigest: keccak256("spec"),
            specCid: bytes("bafkreispec"),
            coordinator: coordinator,
            redundancy: redundancy,
            mode: mode,
            priceCap: cap,
            fee: fee,
            timeoutMs: TIMEOUT,
            assignDeadline: assignDl,
            commitWindow: COMMIT_WINDOW,
            revealWindow: REVEAL_WINDOW,
            spareDeadline: spareDl,
            settleDeadline: spareDl + COMMIT_WINDOW + REVEAL_WINDOW
        });
    }

    function _permit(uint256 ownerKey, address spender, uint256 value)
        internal
        view
        returns (MarketBase.PermitSig memory p)
    {
        address owner = vm.addr(ownerKey);
        uint256 deadline = block.timestamp + 3600;
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, owner, spender, value, token.nonces(owner), deadline)
        );
        bytes32 digest =
            keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ownerKey, digest);
        p = MarketBase.PermitSig({deadline: deadline, v: v, r: r, s: s});
    }

    function _termsFrom(address req, MarketBase.JobParams memory p)
        internal
        pure
        returns (MarketBase.Terms memory)
    {
        return MarketBase.Terms({
            requester: req,
            coordinator: p.coordinator,
            redundancy: p.redundancy,
            mode: p.mode,
            priceCap: p.priceCap,
            fee: p.fee,
            timeoutMs: p.timeoutMs,
            assignDeadline: p.assignDeadline,
            commitWindow: p.commitWindow,
            revealWindow: p.revealWindow,
            spareDeadline: p.spareDeadline,
            settleDeadline: p.settleDeadline
        });
    }

    function _createWith(uint256 reqKey, MarketBase.JobParams memory p) internal returns (bytes32 jobId) {
        uint256 escrow = (uint256(p.redundancy) + 2) * p.priceCap + p.fee;
        MarketBase.PermitSig memory sig = _permit(reqKey, address(market), escrow);
        vm.prank(vm.addr(reqKey));
        jobId = market.createJob(p, sig);
        termsOf[jobId] = _termsFrom(vm.addr(reqKey), p);
    }

    function _create(uint8 redundancy, uint8 mode, uint64 cap, uint64 fee)
        internal
        returns (bytes32 jobId)
    {
        return _createWith(requesterKey, _params(redundancy, mode, cap, fee));
    }

    function _escrow(bytes32 jobId) internal view returns (uint256) {
        MarketBase.Terms memory t = termsOf[jobId];
        return (uint256(t.redundancy) + 2) * t.priceCap + t.fee;
    }

    function _status(bytes32 jobId) internal view returns (uint8 status) {
        (status,,) = market.getJob(jobId);
    }

    function _seats(bytes32 jobId) internal view returns (MarketBase.Seat[] memory) {
        return seatsOf_[jobId];
    }

    function _offersFor(bytes32 jobId, uint256[] memory indices, uint64 price)
        internal
        view
        returns (MarketBase.Offer[] memory offers)
    {
        uint256 base = seatsOf_[jobId].length;
        offers = new MarketBase.Offer[](indices.length);
        for (uint256 i; i < indices.length; ++i) {
            offers[i] = _offer(
                providerKeys[indices[i]],
                jobId,
                termsOf[jobId],
                base + i,
                price,
                RATE,
                uint32(block.timestamp + 300)
            );
        }
    }

    /// Seats providers `indices` (with their consent) at `price`, as the coordinator.
    function _assignIdx(bytes32 jobId, uint256[] memory indices, uint64 price) internal {
        _assignOffers(jobId, _offersFor(jobId, indices, price));
    }

    function _assignOffers(bytes32 jobId, MarketBase.Offer[] memory offers) internal {
        vm.prank(termsOf[jobId].coordinator);
        market.assign(jobId, termsOf[jobId], seatsOf_[jobId], offers);
        for (uint256 i; i < offers.length; ++i) {
            seatsOf_[jobId].push(
                MarketBase.Seat({
                    provider: offers[i].provider,
                    price: offers[i].price,
                    ratePerHour: offers[i].ratePerHour,
                    assignedAt: uint32(block.timestamp)
                })
            );
        }
    }

    function _assign(bytes32 jobId, uint256 n, uint64 price) internal {
        _assignIdx(jobId, _first(n), price);
    }

    function _first(uint256 n) internal pure returns (uint256[] memory indices) {
        indices = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            indices[i] = i;
        }
    }

    function _idx(uint256 a) internal pure returns (uint256[] memory r) {
        r = new uint256[](1);
        r[0] = a;
    }

    function _idx(uint256 a, uint256 b) internal pure returns (uint256[] memory r) {
        r = new uint256[](2);
        r[0] = a;
        r[1] = b;
    }

    function _idx(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory r) {
        r = new uint256[](3);
        r[0] = a;
        r[1] = b;
        r[2] = c;
    }

    function _keyOf(address who) internal view returns (uint256) {
        for (uint256 i; i < providerAddrs.length; ++i) {
            if (providerAddrs[i] == who) return providerKeys[i];
        }
        revert("unknown provider");
    }

    /// A REVEAL entry for seat i with result and runtime.
    function _rev(bytes32 jobId, uint256 seat, bytes32 result, uint64 runtimeMs)
        internal
        view
        returns (MarketBase.Signed memory)
    {
        address who = seatsOf_[jobId][seat].provider;
        return _revealEntry(_keyOf(who), jobId, result, runtimeMs, _saltOf(jobId, seat));
    }

    /// A COMMIT entry for seat i over (result, runtime, its salt).
    function _com(bytes32 jobId, uint256 seat, bytes32 result, uint64 runtimeMs)
        internal
        view
        returns (MarketBase.Signed memory)
    {
        address who = seatsOf_[jobId][seat].provider;
        return _commitEntry(
            _keyOf(who), jobId, _commitHash(jobId, who, result, runtimeMs, _saltOf(jobId, seat))
        );
    }

    function _none() internal pure returns (MarketBase.Signed memory e) {
        return e;
    }

    function _settlement(bytes32 jobId, MarketBase.Signed[] memory signed)
        internal
        view
        returns (MarketBase.Settlement memory)
    {
        return MarketBase.Settlement({
            jobId: jobId, terms: termsOf[jobId], seats: seatsOf_[jobId], signed: signed, winners: 0
        });
    }

    /// Settlement where seat i reveals results[i] with runtime 1000 ms; zero = no entry.
    function _settlementOf(bytes32 jobId, bytes32[] memory results)
        internal
        view
        returns (MarketBase.Settlement memory)
    {
        MarketBase.Signed[] memory signed = new MarketBase.Signed[](results.length);
        for (uint256 i; i < results.length; ++i) {
            if (results[i] != bytes32(0)) signed[i] = _rev(jobId, i, results[i], 1000);
        }
        return _settlement(jobId, signed);
    }

    function _settle(bytes32 jobId, MarketBase.Signed[] memory signed) internal {
        MarketBase.Settlement memory s = _settlement(jobId, signed);
        vm.prank(termsOf[jobId].coordinator);
        market.settle(s);
    }

    /// On-chain commit by seat i's provider of (result, runtime, its salt).
    function _commitOnChain(bytes32 jobId, uint256 seat, bytes32 result, uint64 runtimeMs) internal {
        address who = seatsOf_[jobId][seat].provider;
        bytes32 h = _commitHash(jobId, who, result, runtimeMs, _saltOf(jobId, seat));
        vm.prank(who);
        JobMarketExt(address(market)).commitOnChain(jobId, termsOf[jobId], seatsOf_[jobId], uint8(seat), h);
    }

    /// On-chain reveal by seat i's provider itself, with an optional coordinator receipt.
    function _revealOnChain(bytes32 jobId, uint256 seat, bytes32 result, uint64 runtimeMs, bool withReceipt)
        internal
    {
        address who = seatsOf_[jobId][seat].provider;
        bytes32 salt = _saltOf(jobId, seat);
        bytes memory receipt = withReceipt
            ? _receiptSig(coordinatorKey, jobId, who, seat, _commitHash(jobId, who, result, runtimeMs, salt))
            : bytes("");
        vm.prank(who);
        JobMarketExt(address(market)).revealOnChain(
            jobId, termsOf[jobId], seatsOf_[jobId], uint8(seat), result, runtimeMs, salt, "", receipt
        );
    }

    /// First moment on-chain reveals are accepted, and the last.
    function _revealOpen(bytes32 jobId) internal view returns (uint256 latest) {
        MarketBase.Seat[] memory seats = seatsOf_[jobId];
        for (uint256 i; i < seats.length; ++i) {
            if (seats[i].assignedAt > latest) latest = seats[i].assignedAt;
        }
        latest += termsOf[jobId].commitWindow;
    }

    function _revealClose(bytes32 jobId) internal view returns (uint256) {
        return _revealOpen(jobId) + termsOf[jobId].revealWindow;
    }

    function _owed(address who) internal view returns (uint256 owed) {
        (owed,,) = market.accountOf(who);
        (,,,,, uint64 earned,,,,) = JobMarketExt(address(market)).providerInfo(who);
        owed += earned;
    }

    function _stakeOf(address who) internal view returns (uint256) {
        (,, uint64 stake_,,,,,,,) = JobMarketExt(address(market)).providerInfo(who);
        return stake_;
    }

    function _lockedOf(address who) internal view returns (uint256) {
        (,,, uint64 locked,,,,,,) = JobMarketExt(address(market)).providerInfo(who);
        return locked;
    }

    function _results(bytes32 a, bytes32 b, bytes32 c) internal pure returns (bytes32[] memory r) {
        r = new bytes32[](3);
        r[0] = a;
        r[1] = b;
        r[2] = c;
    }

    function _results(bytes32 a, bytes32 b) internal pure returns (bytes32[] memory r) {
        r = new bytes32[](2);
        r[0] = a;
        r[1] = b;
    }

    function _signed(MarketBase.Signed memory a, MarketBase.Signed memory b)
        internal
        pure
        returns (MarketBase.Signed[] memory r)
    {
        r = new MarketBase.Signed[](2);
        r[0] = a;
        r[1] = b;
    }

    function _signed(MarketBase.Signed memory a, MarketBase.Signed memory b, MarketBase.Signed memory c)
        internal
        pure
        returns (MarketBase.Signed[] memory r)
    {
        r = new MarketBase.Signed[](3);
        r[0] = a;
        r[1] = b;
        r[2] = c;
    }
}
