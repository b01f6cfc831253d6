// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./Fixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {MarketBase} from "../src/MarketBase.sol";

/// Gas of the happy path. Run `forge test --isolate --gas-report --match-contract GasTest`
/// for per-transaction figures (each call its own transaction, warm accounts after the
/// first job); the gasleft() figures logged here exclude the 21,000 base and calldata.
contract GasTest is Fixture {
    bytes32 internal constant X = keccak256("result-x");

    event log_named_uint(string key, uint256 val);

    function _lifecycle() internal returns (uint256 create, uint256 assign, uint256 settle) {
        MarketBase.JobParams memory p = _params(2, 0, CAP, FEE);
        MarketBase.PermitSig memory sig =
            _permit(requesterKey, address(market), 4 * uint256(CAP) + FEE);
        vm.prank(requester);
        uint256 g = gasleft();
        bytes32 jobId = market.createJob(p, sig);
        create = g - gasleft();
        termsOf[jobId] = _termsFrom(requester, p);
        MarketBase.Offer[] memory offers = _offersFor(jobId, _first(2), CAP);
        MarketBase.Terms memory t = termsOf[jobId];
        MarketBase.Seat[] memory none;
        vm.prank(coordinator);
        g = gasleft();
        market.assign(jobId, t, none, offers);
        assign = g - gasleft();
        for (uint256 i; i < 2; ++i) {
            seatsOf_[jobId].push(
                MarketBase.Seat(offers[i].provider, CAP, RATE, uint32(block.timestamp))
            );
        }
        MarketBase.Settlement memory s = _settlement(
            jobId,
            _signedPair(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 1500))
        );
        vm.prank(coordinator);
        g = gasleft();
        market.settle(s);
        settle = g - gasleft();
    }

    function _signedPair(MarketBase.Signed memory a, MarketBase.Signed memory b)
        internal
        pure
        returns (MarketBase.Signed[] memory r)
    {
        r = new MarketBase.Signed[](2);
        r[0] = a;
        r[1] = b;
    }

    function test_gas_lifecycleR2() public {
        _lifecycle(); // warm every party
        (uint256 c, uint256 a, uint256 s) = _lifecycle();
        emit log_named_uint("create (in-test)", c);
        emit log_named_uint("assign 2 seats (in-test)", a);
        emit log_named_uint("settle 2 reveals (in-test)", s);
        emit log_named_uint("lifecycle r=2 (in-test)", c + a + s);
    }

    function test_gas_settleBatch50() public {
        _lifecycle();
        MarketBase.Settlement[] memory list = new MarketBase.Settlement[](50);
        for (uint256 k; k < 50; ++k) {
            MarketBase.JobParams memory p = _params(2, 0, CAP, FEE);
            bytes32 jobId = _createWith(requesterKey, p);
            _assign(jobId, 2, CAP);
            list[k] = _settlement(
                jobId, _signedPair(_rev(jobId, 0, X, 1000), _rev(jobId, 1, X, 1500))
            );
        }
        vm.prank(coordinator);
        uint256 g = gasleft();
        market.settleBatch(list);
        uint256 used = g - gasleft();
        emit log_named_uint("settleBatch(50) per job (in-test)", used / 50);
        for (uint256 k; k < 50; ++k) {
            assertEq(_status(list[k].jobId), 3, "settled");
        }
    }
}
