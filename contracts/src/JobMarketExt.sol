// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketBase} from "./MarketBase.sol";

/// @title JobMarketExt: the market functions off the hot path
/// @notice Runs only through `JobMarket`'s fallback (delegatecall), in the market's storage:
/// provider registration, stake and unbonding; coordinator bonds; cancel, reclaim, abort;
/// on-chain commit and reveal; finalize; and the record views. Called directly it refuses.
contract JobMarketExt is MarketBase {
    error DirectCall();

    /// Deployed by the JobMarket constructor, which is `msg.sender` here.
    constructor(Config memory c) MarketBase(c, msg.sender) {}

    modifier viaMarket() {
        if (address(this) != market) revert DirectCall();
        _;
    }

    /// @notice Bond `amount` more as a coordinator. `deadline` 0: the allowance is already
    /// given; otherwise an EIP-2612 permit for `amount` is submitted first.
    function bondCoordinator(uint64 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external viaMarket
    {
        if (amount == 0) revert ZeroAmount();
        if (deadline != 0) {
            try token.permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        }
        Coordinator storage c = _coordinators[msg.sender];
        uint256 total = uint256(c.bond) + amount;
        if (total > type(uint64).max) revert StakeOverflow(total);
        c.bond = uint64(total);
        emit CoordinatorBonded(msg.sender, amount, uint64(total));
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }
    /// @notice Move `amount` of the caller's bond into unbonding; the delay restarts.
    function requestCoordinatorUnbond(uint64 amount) external viaMarket {
        if (amount == 0) revert ZeroAmount();
        Coordinator memory c = _coordinators[msg.sender];
        if (amount > c.bond) revert InsufficientBond(msg.sender, c.bond, amount);
        c.bond -= amount;
        c.unbonding += amount;
        c.readyAt = uint40(block.timestamp) + coordinatorUnbondDelay;
        _coordinators[msg.sender] = c;
        emit CoordinatorUnbondRequested(msg.sender, amount, c.unbonding, c.readyAt);
    }
    /// @notice Withdraw the caller's unbonded coordinator bond once its delay has passed.
    function withdrawCoordinatorBond() external viaMarket {
        Coordinator memory c = _coordinators[msg.sender];
        if (c.unbonding == 0) revert NothingToWithdraw(msg.sender);
        if (block.timestamp < c.readyAt) revert UnbondingNotReady(msg.sender, c.readyAt);
        uint64 amount = c.unbonding;
        c.unbonding = 0;
        c.readyAt = 0;
        _coordinators[msg.sender] = c;
        emit CoordinatorWithdrawn(msg.sender, amount);
        if (!token.transfer(msg.sender, amount)) revert TokenTransferFailed();
    }
    function coordinatorInfo(address coordinator)
        external
        view
        returns (uint64 bond, uint64 unbonding, uint40 readyAt)
    {
        Coordinator memory c = _coordinators[coordinator];
        return (c.bond, c.unbonding, c.readyAt);
    }
    /// @notice Register the caller as a provider, optionally declaring an operator group:
    /// two providers of one group are never assigned to the same job.
    function register(uint24 group) external viaMarket {
        Provider storage p = _providers[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        p.registered = true;
        p.group = group;
        emit ProviderRegistered(msg.sender, group);
    }
    /// @notice Bond `amount` more stake; this contract must be approved for it.
    function stake(uint64 amount) external viaMarket {
        _stake(amount);
    }
    /// @notice Bond stake with an EIP-2612 permit in the same transaction.
    function stakeWithPermit(uint64 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external viaMarket
    {
        // A permit someone already submitted leaves the allowance in place: not fatal.
        try token.permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _stake(amount);
    }
    /// @notice Move `amount` of free stake into unbonding; the delay restarts.
    function requestUnbond(uint64 amount) external viaMarket {
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        uint64 free = p.stake - p.locked;
        if (amount > free) revert InsufficientFreeStake(msg.sender, free, amount);
        p.stake -= uint56(amount);
        Unbonding storage u = unbondings[msg.sender];
        u.amount += amount;
        u.readyAt = uint40(block.timestamp) + unbondingDelay;
        emit UnbondRequested(msg.sender, amount, u.amount, u.readyAt);
    }
    /// @notice Withdraw all unbonded stake once the unbonding delay has passed.
    function withdraw() external viaMarket {
        Unbonding memory u = unbondings[msg.sender];
        if (u.amount == 0) revert NothingToWithdraw(msg.sender);
        if (block.timestamp < u.readyAt) revert UnbondingNotReady(msg.sender, u.readyAt);
        delete unbondings[msg.sender];
        emit Withdrawn(msg.sender, u.amount);
        if (!token.transfer(msg.sender, u.amount)) revert TokenTransferFailed();
    }
    /// @notice Everything known about a provider; `free` = stake - locked.
    function providerInfo(address provider)
        external
        view
        returns (
            bool registered,
            uint24 group,
            uint64 stakeAmount,
            uint64 locked,
            uint64 free,
            uint64 earned,
            uint32 completed,
            uint24 slashedCount,
            uint64 unbonding,
            uint40 unbondReadyAt
        )
    {
        Provider memory p = _providers[provider];
        Unbonding memory u = unbondings[provider];
        return (
            p.registered,
            p.group,
            p.stake,
            p.locked,
            p.stake - p.locked,
            p.earned,
            p.completed,
            p.slashed,
            u.amount,
            u.readyAt
        );
    }
    function _stake(uint64 amount) private {
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        if (!p.registered) revert ProviderNotRegistered(msg.sender);
        uint256 total = uint256(p.stake) + amount;
        if (total > type(uint56).max) revert StakeOverflow(total);
        p.stake = uint56(total);
        emit Staked(msg.sender, amount, uint64(total));
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }
    /// @notice Cancel a job nobody was seated in yet; the whole escrow is credited back.
    function cancel(bytes32 jobId, Terms calldata t) external viaMarket {
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_OPEN, STATUS_OPEN);
        if (_commitment(t, bytes32(0)) != slot & ~META_MASK) revert RecordMismatch(jobId);
        if (msg.sender != t.requester) revert NotRequester(jobId, msg.sender);
        jobSlots[jobId] = _seal(0, 0, STATUS_CANCELLED);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee);
        _credit(t.requester, refund);
        emit JobCancelled(jobId, refund);
    }
    /// @notice Take back the whole escrow of a job nobody was seated in by its assign
    /// deadline, or of a job the quorum rule leaves undecided after its settle deadline.
    function reclaim(bytes32 jobId, Terms calldata t, Seat[] calldata seats)
        external viaMarket
        nonReentrant
    {
        (uint256 slot, uint8 status) = _load(jobId, t, seats, STATUS_OPEN, STATUS_ASSIGNED);
        if (msg.sender != t.requester) revert NotRequester(jobId, msg.sender);
        uint32 deadline = status == STATUS_OPEN ? t.assignDeadline : t.settleDeadline;
        if (block.timestamp <= deadline) revert ReclaimTooEarly(jobId, deadline);
        uint256 n = seats.length;
        if (n != 0) {
            Tally memory tl = _onChainTally(jobId, slot, n);
            (, bool decided) = _decide(tl, t.redundancy);
            if (decided) revert MajorityExists(jobId);
        }
        jobSlots[jobId] = _seal(0, n, STATUS_RECLAIMED);
        _release(seats);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee);
        _credit(t.requester, refund);
        emit JobReclaimed(jobId, refund);
    }
    /// @notice The coordinator ends an open or assigned job before any on-chain commit or
    /// reveal: every lock is released and the whole escrow (fee included) is refunded.
    function abort(bytes32 jobId, Terms calldata t, Seat[] calldata seats)
        external viaMarket
        nonReentrant
    {
        (uint256 slot,) = _load(jobId, t, seats, STATUS_OPEN, STATUS_ASSIGNED);
        if (msg.sender != t.coordinator) revert NotCoordinator(jobId, msg.sender);
        if (slot & FLAG_ON_CHAIN != 0) revert CommittedOnChain(jobId);
        jobSlots[jobId] = _seal(0, seats.length, STATUS_ABORTED);
        _release(seats);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee);
        _credit(t.requester, refund);
        emit JobAborted(jobId, refund);
    }
    /// @notice A seated provider commits on chain itself, by its seat's commit deadline.
    function commitOnChain(
        bytes32 jobId,
        Terms calldata t,
        Seat[] calldata seats,
        uint8 seat,
        bytes32 commitHash
    ) external viaMarket {
        (uint256 slot,) = _load(jobId, t, seats, STATUS_ASSIGNED, STATUS_ASSIGNED);
        if (seat >= seats.length || seats[seat].provider != msg.sender) {
            revert NotAssignedProvider(jobId, msg.sender);
        }
        uint32 deadline = seats[seat].assignedAt + t.commitWindow;
        if (block.timestamp > deadline) revert CommitDeadlinePassed(jobId, deadline);
        OnChainEntry storage e = onChain[_entryKey(jobId, seat)];
        if (e.committed) revert AlreadyCommitted(jobId, msg.sender);
        e.commitHash = commitHash;
        e.committed = true;
        if (slot & FLAG_ON_CHAIN == 0) jobSlots[jobId] = slot | FLAG_ON_CHAIN;
        emit ProviderCommitted(jobId, msg.sender, seat, commitHash);
    }
    /// @notice Anyone posts a seat's reveal inside the reveal window. `providerSig` (r||s||v)
    /// is the provider's Reveal signature (empty when the provider sends it); `receiptSig` the
    /// coordinator's CommitReceipt (empty when the seat committed on chain, or when there is
    /// none: the reveal is then recorded without voting).
    function revealOnChain(
        bytes32 jobId,
        Terms calldata t,
        Seat[] calldata seats,
        uint8 seat,
        bytes32 result,
        uint64 runtimeMs,
        bytes32 salt,
        bytes calldata providerSig,
        bytes calldata receiptSig
    ) external viaMarket {
        (uint256 slot,) = _load(jobId, t, seats, STATUS_ASSIGNED, STATUS_ASSIGNED);
        if (seat >= seats.length) revert NotAssignedProvider(jobId, msg.sender);
        address provider = seats[seat].provider;
        {
            uint32 opensAt = _revealOpen(seats, t.commitWindow);
            if (block.timestamp <= opensAt) revert RevealNotOpen(jobId, opensAt);
            uint32 closedAt = opensAt + t.revealWindow;
            if (block.timestamp > closedAt) revert RevealWindowClosed(jobId, closedAt);
        }
        bytes32 domain = domainSeparator();
        if (msg.sender != provider) {
            bytes32 digest = _typed(
                domain,
                keccak256(abi.encode(REVEAL_TYPEHASH, jobId, provider, result, runtimeMs, salt))
            );
            if (!_validBytesSig(digest, providerSig, provider)) {
                revert InvalidSignature(jobId, provider);
            }
        }
        OnChainEntry memory e = onChain[_entryKey(jobId, seat)];
        // A reveal recorded without a vote (no receipt, no on-chain commit) can still be
        // superseded by one carrying the coordinator's receipt: whoever posted the first
        // cannot take the provider's vote away.
        if (e.revealed && (e.votes || receiptSig.length == 0)) {
            revert AlreadyRevealed(jobId, provider);
        }
        bytes32 commitHash = keccak256(abi.encode(jobId, provider, result, runtimeMs, salt));
        bool votes;
        if (e.committed) {
            if (commitHash != e.commitHash) revert RevealMismatch(jobId, provider);
            votes = true;
        } else if (receiptSig.length != 0) {
            bytes32 digest = _typed(
                domain, keccak256(abi.encode(RECEIPT_TYPEHASH, jobId, provider, seat, commitHash))
            );
            if (!_validBytesSig(digest, receiptSig, t.coordinator)) {
                revert InvalidReceipt(jobId, provider);
            }
            votes = true;
        }
        e.commitHash = commitHash;
        e.result = result;
        e.runtimeMs = runtimeMs;
        e.revealed = true;
        e.votes = votes;
        onChain[_entryKey(jobId, seat)] = e;
        if (slot & FLAG_ON_CHAIN == 0) jobSlots[jobId] = slot | FLAG_ON_CHAIN;
        emit ProviderRevealed(jobId, provider, seat, result, runtimeMs, salt, votes);
    }
    /// @notice After the settle deadline anyone closes a job the on-chain state decides; the
    /// unearned fee goes back to the requester.
    function finalize(bytes32 jobId, Terms calldata t, Seat[] calldata seats)
        external viaMarket
        nonReentrant
    {
        (uint256 slot,) = _load(jobId, t, seats, STATUS_ASSIGNED, STATUS_ASSIGNED);
        if (block.timestamp <= t.settleDeadline) {
            revert FinalizeTooEarly(jobId, t.settleDeadline);
        }
        Tally memory tl = _onChainTally(jobId, slot, seats.length);
        (uint256 best, bool decided) = _decide(tl, t.redundancy);
        if (!decided) revert NoMajority(jobId);
        uint256 slashMask = t.mode == MODE_EXACT ? (tl.votes & ~best) | tl.withheld : 0;
        _conclude(jobId, t, seats, tl, best, slashMask, false);
        emit JobFinalized(jobId, msg.sender);
    }
    function commitmentOf(Terms calldata t, Seat[] calldata seats)
        external
        pure
        returns (bytes32)
    {
        return bytes32(_commitment(t, _chainOf(seats)));
    }
    function termsHash(Terms calldata t) external pure returns (bytes32) {
        return keccak256(abi.encode(t));
    }
    function onChainEntry(bytes32 jobId, uint8 seat)
        external
        view
        returns (
            bytes32 commitHash,
            bytes32 result,
            uint64 runtimeMs,
            bool committed,
            bool revealed,
            bool votes
        )
    {
        OnChainEntry memory e = onChain[_entryKey(jobId, seat)];
        return (e.commitHash, e.result, e.runtimeMs, e.committed, e.revealed, e.votes);
    }
    function jobIdFor(address requester, uint256 nonce) external pure returns (bytes32) {
        return keccak256(abi.encode(requester, nonce));
    }
}
