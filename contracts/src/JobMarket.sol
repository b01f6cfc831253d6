// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20Permit} from "./IERC20Permit.sol";
import {JobMarketExt} from "./JobMarketExt.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title JobMarket v2: escrowed compute jobs, seated with the providers' consent and
/// decided by one quorum rule over signed and on-chain commitments
/// @notice See contracts/README.md, the rulebook this contract implements. This is the
/// market's address and its hot path (createJob, assign, settle, settleBatch, claim); every
/// other function (registry, on-chain commit/reveal, finalize, reclaim, cancel, abort) is
/// served by `JobMarketExt` through the fallback, in this contract's storage.
///
/// Storage: each job is ONE slot holding a 248-bit commitment to its terms and seats plus, in
/// the low byte, its status (bits 0-2), seat count (bits 3-5) and a flag (bit 6) saying that
/// some seat committed or revealed on chain (so the happy path never reads on-chain entries).
/// Callers pass the terms (JobCreated) and seats (ProviderAssigned) back in.
contract JobMarket is MarketBase {
    /// Where every function not defined here is served (deployed by this constructor).
    address public immutable extension;

    constructor(
        IERC20Permit token_,
        uint64 minStake_,
        uint32 unbondingDelay_,
        uint64 stakeFactor_,
        uint64 minPrice_,
        uint64 minCoordinatorBond_,
        uint32 coordinatorUnbondDelay_
    )
        MarketBase(
            Config(
                token_,
                minStake_,
                unbondingDelay_,
                stakeFactor_,
                minPrice_,
                minCoordinatorBond_,
                coordinatorUnbondDelay_
            ),
            address(this)
        )
    {
        uint8 decimals = token_.decimals();
        if (decimals != 6) revert TokenDecimals(decimals);
        if (minStake_ == 0) revert InvalidConstructorArgument("minStake");
        if (stakeFactor_ == 0 || stakeFactor_ > 100) {
            revert InvalidConstructorArgument("stakeFactor");
        }
        if (minPrice_ == 0) revert InvalidConstructorArgument("minPrice");
        if (minCoordinatorBond_ == 0) revert InvalidConstructorArgument("minCoordinatorBond");
        if (coordinatorUnbondDelay_ <= MAX_JOB_DURATION) {
            revert InvalidConstructorArgument("coordinatorUnbondDelay");
        }
        extension = address(
            new JobMarketExt(
                Config(
                    token_,
                    minStake_,
                    unbondingDelay_,
                    stakeFactor_,
                    minPrice_,
                    minCoordinatorBond_,
                    coordinatorUnbondDelay_
                )
            )
        );
    }

    /// Every other function of the market runs in the extension, on this storage.
    fallback() external {
        address ext = extension;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), ext, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    /// @notice Create a job and escrow (redundancy + 2) * priceCap + fee from the caller.
    function createJob(JobParams calldata p, PermitSig calldata permit)
        external
        nonReentrant
        returns (bytes32 jobId)
    {
        _checkParams(p);
        Terms memory t = Terms({
            requester: msg.sender,
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
        uint256 escrow = _escrowOf(t.redundancy, t.priceCap, t.fee);
        Account storage acct = accounts[msg.sender];
        uint64 nonce = acct.nonce;
        jobId = keccak256(abi.encode(msg.sender, uint256(nonce)));
        acct.nonce = nonce + 1;
        jobSlots[jobId] = _seal(keccak256(abi.encode(t, bytes32(0))), 0, STATUS_OPEN);
        _emitCreated(jobId, p, escrow);
        if (permit.deadline != 0) {
            try token.permit(
                msg.sender, address(this), escrow, permit.deadline, permit.v, permit.r, permit.s
            ) {} catch {}
        }
        if (!token.transferFrom(msg.sender, address(this), escrow)) revert TokenTransferFailed();
    }
    /// @notice Withdraw everything credited to the caller (payments, fees, refunds).
    function claim() external nonReentrant {
        Account storage acct = accounts[msg.sender];
        Provider storage p = _providers[msg.sender];
        uint256 owed = acct.owed;
        uint256 earned = p.earned;
        uint256 amount = owed + earned;
        if (amount == 0) revert NothingToClaim(msg.sender);
        if (owed != 0) acct.owed = 0;
        if (earned != 0) p.earned = 0;
        emit Claimed(msg.sender, amount);
        if (!token.transfer(msg.sender, amount)) revert TokenTransferFailed();
    }
    /// @notice Append `offers` (each with its provider's Accept signature) to the job's
    /// `seats`; each new seat locks stakeFactor * price of its provider.
    function assign(
        bytes32 jobId,
        Terms calldata t,
        Seat[] calldata seats,
        Offer[] calldata offers
    ) external nonReentrant {
        uint256 slot = jobSlots[jobId];
        uint8 status = _expectStatus(jobId, slot, STATUS_OPEN, STATUS_ASSIGNED);
        uint256 already = seats.length;
        if (already != _countOf(slot)) revert LengthMismatch();
        bytes32 chain = _chainOf(seats);
        if (_commitment(t, chain) != slot & ~META_MASK) revert RecordMismatch(jobId);
        if (msg.sender != t.coordinator) revert NotCoordinator(jobId, msg.sender);
        uint256 k = offers.length;
        if (k == 0) revert NothingToAssign(jobId);
        uint256 n = already + k;
        uint256 max = uint256(t.redundancy) + 2;
        if (n > max) revert TooManyProviders(n, max);
        if (status == STATUS_OPEN) {
            if (block.timestamp > t.assignDeadline) {
                revert AssignDeadlinePassed(jobId, t.assignDeadline);
            }
        } else {
            uint32 deadline = _revealOpen(seats, t.commitWindow);
            if (t.spareDeadline < deadline) deadline = t.spareDeadline;
            if (block.timestamp > deadline) revert SpareDeadlinePassed(jobId, deadline);
        }
        address[] memory list = new address[](n);
        uint64[] memory locks = new uint64[](n);
        for (uint256 i; i < already; ++i) {
            list[i] = seats[i].provider;
        }
        bytes32 termsHash_ = keccak256(abi.encode(t));
        bytes32 domain = domainSeparator();
        uint32 now32 = uint32(block.timestamp);
        uint64 factor = stakeFactor;
        for (uint256 j; j < k; ++j) {
            Offer calldata o = offers[j];
            uint256 i = already + j;
            _checkOffer(jobId, t.priceCap, o, i, termsHash_, domain);
            chain = _link(chain, o.provider, o.price, o.ratePerHour, now32);
            list[i] = o.provider;
            locks[i] = o.price * factor;
            emit ProviderAssigned(
                jobId,
                o.provider,
                uint256(o.price) | (uint256(o.ratePerHour) << 64) | (uint256(now32) << 128)
                    | (i << 160)
            );
        }
        jobSlots[jobId] = _seal(keccak256(abi.encode(t, chain)), n, STATUS_ASSIGNED)
            | (slot & FLAG_ON_CHAIN);
        _lock(list, locks, already);
    }
    /// @notice Settle one job; reverts with the error that makes the settlement invalid.
    function settle(Settlement calldata s) external nonReentrant {
        _settleOne(s, true);
    }
    /// @notice Settle up to MAX_BATCH jobs; each invalid settlement is skipped with
    /// SettlementSkipped(jobId, selector of the error settle would raise).
    function settleBatch(Settlement[] calldata list) external nonReentrant {
        uint256 n = list.length;
        if (n > MAX_BATCH) revert BatchTooLarge(n, MAX_BATCH);
        for (uint256 i; i < n; ++i) {
            _settleOne(list[i], false);
        }
    }
    /// The one settlement path: validate (without reverting), then either pay or, when
    /// invalid, revert with the full error (`strict`) or skip with its selector.
    function _settleOne(Settlement calldata s, bool strict) private {
        (bytes memory err, Tally memory tl, uint256 winners, uint256 slashMask) = _check(s);
        if (err.length == 0) {
            _conclude(s.jobId, s.terms, s.seats, tl, winners, slashMask, true);
        } else if (strict) {
            assembly ("memory-safe") {
                revert(add(err, 32), mload(err))
            }
        } else {
            emit SettlementSkipped(s.jobId, bytes4(err));
        }
    }
    function getJob(bytes32 jobId)
        external
        view
        returns (uint8 status, uint8 seats, bytes32 commitment)
    {
        uint256 slot = jobSlots[jobId];
        return (uint8(slot & 7), uint8(_countOf(slot)), bytes32(slot & ~META_MASK));
    }
    function accountOf(address account)
        external
        view
        returns (uint256 owed, uint256 lifetime, uint64 nonce)
    {
        Account memory a = accounts[account];
        return (a.owed, a.lifetime, a.nonce);
    }
    /// Validates a settlement without reverting: returns the encoded error (empty when
    /// valid), the tally, the winners and the slash mask.
    function _check(Settlement calldata s)
        private
        view
        returns (bytes memory err, Tally memory tl, uint256 winners, uint256 slashMask)
    {
        bytes32 jobId = s.jobId;
        uint256 slot = jobSlots[jobId];
        uint8 status = uint8(slot & 7);
        if (status == STATUS_NONE) {
            return (abi.encodeWithSelector(JobNotFound.selector, jobId), tl, 0, 0);
        }
        if (status != STATUS_ASSIGNED) {
            return (abi.encodeWithSelector(WrongStatus.selector, jobId, status), tl, 0, 0);
        }
        Seat[] calldata seats = s.seats;
        uint256 n = seats.length;
        if (n != _countOf(slot) || s.signed.length != n) {
            return (abi.encodeWithSelector(LengthMismatch.selector), tl, 0, 0);
        }
        Terms calldata t = s.terms;
        if (_commitment(t, _chainOf(seats)) != slot & ~META_MASK) {
            return (abi.encodeWithSelector(RecordMismatch.selector, jobId), tl, 0, 0);
        }
        if (msg.sender != t.coordinator) {
            return (abi.encodeWithSelector(NotCoordinator.selector, jobId, msg.sender), tl, 0, 0);
        }
        if (block.timestamp > t.settleDeadline) {
            return (
                abi.encodeWithSelector(SettleDeadlinePassed.selector, jobId, t.settleDeadline),
                tl,
                0,
                0
            );
        }
        (err, tl) = _settlementTally(s, slot);
        if (err.length != 0) return (err, tl, 0, 0);
        uint256 quorum = _quorum(tl, t.redundancy);
        if (t.mode == MODE_EXACT) {
            if (s.winners != 0) {
                return (abi.encodeWithSelector(InvalidWinners.selector, jobId, s.winners), tl, 0, 0);
            }
            winners = _bestGroup(tl);
            slashMask = (tl.votes & ~winners) | tl.withheld;
        } else {
            winners = s.winners;
            if (winners == 0 || winners & ~tl.votes != 0) {
                return (abi.encodeWithSelector(InvalidWinners.selector, jobId, winners), tl, 0, 0);
            }
        }
        if (_popcount(winners) * 2 <= quorum) {
            return (abi.encodeWithSelector(NoMajority.selector, jobId), tl, 0, 0);
        }
    }
    /// Per seat: a voting on-chain reveal, else the entry (REVEAL: vote; COMMIT: withheld
    /// unless an on-chain reveal opened that commitment), else an on-chain commit never
    /// revealed (withheld once the reveal window closed). Before revealClose every live seat
    /// needs a vote and COMMIT entries are refused.
    function _settlementTally(Settlement calldata s, uint256 slot)
        private
        view
        returns (bytes memory err, Tally memory tl)
    {
        bytes32 jobId = s.jobId;
        Seat[] calldata seats = s.seats;
        uint256 n = seats.length;
        tl.results = new bytes32[](n);
        tl.runtimes = new uint64[](n);
        uint32 commitWindow = s.terms.commitWindow;
        bool early = block.timestamp <= uint256(_revealOpen(seats, commitWindow)) + s.terms.revealWindow;
        bool flagged = slot & FLAG_ON_CHAIN != 0;
        bytes32 domain = domainSeparator();
        for (uint256 i; i < n; ++i) {
            Signed calldata e = s.signed[i];
            address provider = seats[i].provider;
            uint8 kind = e.kind;
            if (kind != KIND_NONE) {
                bytes32 structHash;
                if (kind == KIND_REVEAL) {
                    structHash = keccak256(
                        abi.encode(REVEAL_TYPEHASH, jobId, provider, e.value, e.runtimeMs, e.salt)
                    );
                } else if (kind == KIND_COMMIT) {
                    structHash = keccak256(abi.encode(COMMIT_TYPEHASH, jobId, provider, e.value));
                } else {
                    return (abi.encodeWithSelector(InvalidSignatureKind.selector, i, kind), tl);
                }
                if (!_validSig(_typed(domain, structHash), e.v, e.r, e.s, provider)) {
                    return (abi.encodeWithSelector(InvalidSignature.selector, jobId, provider), tl);
                }
                if (kind == KIND_COMMIT && early) {
                    return (abi.encodeWithSelector(SettleTooEarly.selector, jobId, uint8(i)), tl);
                }
            }
            OnChainEntry memory oc;
            if (flagged) oc = onChain[_entryKey(jobId, i)];
            uint256 bit = 1 << i;
            if (oc.revealed && oc.votes) {
                tl.results[i] = oc.result;
                tl.runtimes[i] = oc.runtimeMs;
                tl.votes |= bit;
            } else if (kind == KIND_REVEAL) {
                tl.results[i] = e.value;
                tl.runtimes[i] = e.runtimeMs;
                tl.votes |= bit;
            } else if (kind == KIND_COMMIT) {
                if (!(oc.revealed && oc.commitHash == e.value)) tl.withheld |= bit;
            } else if (oc.committed && !oc.revealed && !early) {
                tl.withheld |= bit;
            }
            if (
                early && tl.votes & bit == 0
                    && (oc.committed || block.timestamp <= uint256(seats[i].assignedAt) + commitWindow)
            ) {
                return (abi.encodeWithSelector(SettleTooEarly.selector, jobId, uint8(i)), tl);
            }
        }
    }
    function _checkOffer(
        bytes32 jobId,
        uint64 priceCap,
        Offer calldata o,
        uint256 seat,
        bytes32 termsHash_,
        bytes32 domain
    ) private view {
        if (block.timestamp > o.expiry) revert OfferExpired(jobId, o.provider, o.expiry);
        if (o.price > priceCap) revert PriceAboveCap(o.price, priceCap);
        if (o.price < minPrice) revert PriceBelowMinimum(o.price, minPrice);
        if (o.ratePerHour == 0) revert InvalidRate(o.provider);
        bytes32 structHash = keccak256(
            abi.encode(
                ACCEPT_TYPEHASH,
                jobId,
                o.provider,
                uint8(seat),
                o.price,
                o.ratePerHour,
                termsHash_,
                o.expiry
            )
        );
        if (!_validSig(_typed(domain, structHash), o.v, o.r, o.s, o.provider)) {
            revert InvalidAccept(jobId, o.provider);
        }
    }
    function _checkParams(JobParams calldata p) private view {
        if (p.redundancy == 0 || p.redundancy > MAX_REDUNDANCY) {
            revert InvalidRedundancy(p.redundancy);
        }
        if (p.mode > MODE_TOLERANCE) revert InvalidMode(p.mode);
        if (p.priceCap < minPrice || uint256(p.priceCap) * stakeFactor > type(uint56).max) {
            revert InvalidPriceCap(p.priceCap);
        }
        if (_coordinators[p.coordinator].bond < minCoordinatorBond) {
            revert CoordinatorNotBonded(p.coordinator);
        }
        uint256 cidLength = p.specCid.length;
        if (cidLength == 0 || cidLength > MAX_SPEC_CID_LENGTH) revert InvalidSpecCid(cidLength);
        if (p.timeoutMs == 0 || p.timeoutMs > uint256(p.commitWindow) * 1000) {
            revert InvalidTimeout(p.timeoutMs);
        }
        if (
            p.assignDeadline <= block.timestamp || p.spareDeadline < p.assignDeadline
                || p.commitWindow == 0 || p.revealWindow == 0
                || uint256(p.spareDeadline) + p.commitWindow + p.revealWindow > p.settleDeadline
                || p.settleDeadline > block.timestamp + MAX_JOB_DURATION
        ) revert InvalidDeadlines();
    }
    function _emitCreated(bytes32 jobId, JobParams calldata p, uint256 escrow) private {
        uint256 money = uint256(p.redundancy) | (uint256(p.mode) << 8) | (uint256(p.priceCap) << 16)
            | (uint256(p.fee) << 80) | (uint256(p.timeoutMs) << 144);
        uint256 times = uint256(p.assignDeadline) | (uint256(p.commitWindow) << 32)
            | (uint256(p.revealWindow) << 64) | (uint256(p.spareDeadline) << 96)
            | (uint256(p.settleDeadline) << 128);
        emit JobCreated(jobId, msg.sender, p.coordinator, p.specDigest, p.specCid, money, times, escrow);
    }
}
