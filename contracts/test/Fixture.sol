// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {TestBase} from "./Base.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IERC20Permit} from "../src/IERC20Permit.sol";

/// Deploys the token and market and drives them with known keys.
abstract contract Fixture is TestBase {
    uint64 internal constant MIN_STAKE = 50e6;
    uint32 internal constant UNBONDING = 1 days;
    uint64 internal constant FACTOR = 5;
    uint64 internal constant CAP = 2_500_000;
    uint64 internal constant FEE = 100_000;
    uint256 internal constant T0 = 1_700_000_000;

    bytes32 internal constant PERMIT_TYPEHASH = keccak256(
        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    );

    TestUSD internal token;
    JobMarket internal market;

    uint256 internal requesterKey = 0xA11CE;
    uint256 internal coordinatorKey = 0xC00D;
    address internal requester;
    address internal coordinator;
    uint256[] internal providerKeys;
    address[] internal providerAddrs;
    mapping(bytes32 => JobMarket.Terms) internal termsOf;

    function setUp() public virtual {
        vm.warp(T0);
        token = new TestUSD();
        market = new JobMarket(IERC20Permit(address(token)), MIN_STAKE, UNBONDING, FACTOR);
        requester = vm.addr(requesterKey);
        coordinator = vm.addr(coordinatorKey);
        token.mint(requester, 1_000_000e6);
        for (uint256 i; i < 6; ++i) {
            uint256 key = 0x1001 + i;
            providerKeys.push(key);
            address who = vm.addr(key);
            providerAddrs.push(who);
            token.mint(who, 10_000e6);
            vm.prank(who);
            market.register(i >= 4 ? 7 : 0); // providers 4 and 5 share operator group 7
            _stakeAs(i, 1_000e6);
        }
    }

    function _stakeAs(uint256 index, uint64 amount) internal {
        address who = providerAddrs[index];
        vm.startPrank(who);
        token.approve(address(market), amount);
        market.stake(amount);
        vm.stopPrank();
    }

    function _params(uint8 redundancy, uint8 mode, uint64 cap, uint64 fee)
        internal
        view
        returns (JobMarket.JobParams memory)
    {
        return JobMarket.JobParams({
            specDigest: keccak256("spec"),
            specCid: bytes("bafkreispec"),
            coordinator: coordinator,
            redundancy: redundancy,
            mode: mode,
            priceCap: cap,
            fee: fee,
            assignDeadline: uint32(block.timestamp + 600),
            commitDeadline: uint32(block.timestamp + 1200),
            settleDeadline: uint32(block.timestamp + 1800)
        });
    }

    function _permit(uint256 ownerKey, address spender, uint256 value)
        internal
        view
        returns (JobMarket.PermitSig memory p)
    {
        address owner = vm.addr(ownerKey);
        uint256 deadline = block.timestamp + 3600;
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, owner, spender, value, token.nonces(owner), deadline)
        );
        bytes32 digest =
            keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ownerKey, digest);
        p = JobMarket.PermitSig({deadline: deadline, v: v, r: r, s: s});
    }

    function _create(uint8 redundancy, uint8 mode, uint64 cap, uint64 fee)
        internal
        returns (bytes32 jobId)
    {
        JobMarket.JobParams memory p = _params(redundancy, mode, cap, fee);
        uint256 escrow = (uint256(redundancy) + 1) * cap + fee;
        JobMarket.PermitSig memory sig = _permit(requesterKey, address(market), escrow);
        vm.prank(requester);
        jobId = market.createJob(p, sig);
        termsOf[jobId] = JobMarket.Terms({
            requester: requester,
            coordinator: p.coordinator,
            redundancy: p.redundancy,
            mode: p.mode,
            priceCap: p.priceCap,
            fee: p.fee,
            assignDeadline: p.assignDeadline,
            commitDeadline: p.commitDeadline,
            settleDeadline: p.settleDeadline
        });
    }

    function _escrow(bytes32 jobId) internal view returns (uint256) {
        JobMarket.Terms memory t = termsOf[jobId];
        return (uint256(t.redundancy) + 1) * t.priceCap + t.fee;
    }

    function _status(bytes32 jobId) internal view returns (uint8 status) {
        (status,,) = market.getJob(jobId);
    }

    function _list(uint256[] memory indices, uint64 price)
        internal
        view
        returns (address[] memory providers, uint64[] memory prices)
    {
        providers = new address[](indices.length);
        prices = new uint64[](indices.length);
        for (uint256 i; i < indices.length; ++i) {
            providers[i] = providerAddrs[indices[i]];
            prices[i] = price;
        }
    }

    function _first(uint256 n) internal pure returns (uint256[] memory indices) {
        indices = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            indices[i] = i;
        }
    }

    function _assign(bytes32 jobId, uint256 n, uint64 price)
        internal
        returns (address[] memory providers, uint64[] memory prices)
    {
        (providers, prices) = _list(_first(n), price);
        JobMarket.Terms memory t = termsOf[jobId];
        vm.prank(coordinator);
        market.assign(jobId, t, providers, prices);
    }

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", market.domainSeparator(), structHash));
    }

    function _reveal(uint256 key, bytes32 jobId, bytes32 result, bytes32 salt)
        internal
        view
        returns (JobMarket.Signed memory e)
    {
        bytes32 structHash =
            keccak256(abi.encode(market.REVEAL_TYPEHASH(), jobId, vm.addr(key), result, salt));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        e = JobMarket.Signed({kind: 1, value: result, salt: salt, v: v, r: r, s: s});
    }

    function _commit(uint256 key, bytes32 jobId, bytes32 commitHash)
        internal
        view
        returns (JobMarket.Signed memory e)
    {
        bytes32 structHash =
            keccak256(abi.encode(market.COMMIT_TYPEHASH(), jobId, vm.addr(key), commitHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(structHash));
        e = JobMarket.Signed({kind: 2, value: commitHash, salt: bytes32(0), v: v, r: r, s: s});
    }

    function _none() internal pure returns (JobMarket.Signed memory e) {
        return e;
    }

    /// Settlement where provider i (of the first n) reveals results[i]; zero = no entry.
    function _settlement(bytes32 jobId, address[] memory providers, uint64[] memory prices, bytes32[] memory results)
        internal
        view
        returns (JobMarket.Settlement memory s)
    {
        JobMarket.Signed[] memory signed = new JobMarket.Signed[](providers.length);
        for (uint256 i; i < providers.length; ++i) {
            if (results[i] != bytes32(0)) {
                signed[i] = _reveal(_keyOf(providers[i]), jobId, results[i], keccak256(abi.encode(i)));
            }
        }
        s = JobMarket.Settlement({
            jobId: jobId,
            terms: termsOf[jobId],
            providers: providers,
            prices: prices,
            signed: signed,
            winners: 0
        });
    }

    function _keyOf(address who) internal view returns (uint256) {
        for (uint256 i; i < providerAddrs.length; ++i) {
            if (providerAddrs[i] == who) return providerKeys[i];
        }
        revert("unknown provider");
    }

    function _owed(address who) internal view returns (uint256 owed) {
        (owed,,) = market.accountOf(who);
        (,,,,, uint64 earned,,,,) = market.providerInfo(who);
        owed += earned;
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
}
