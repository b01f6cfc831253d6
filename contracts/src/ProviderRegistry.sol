// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20Permit} from "./IERC20Permit.sol";

/// @title ProviderRegistry: provider registration, stake, unbonding, locking and slashing
/// @notice The provider half of the market contract (JobMarket inherits it, so stake, escrow
/// and credits sit in one token balance and settlement touches each provider's single slot
/// once). Providers register (optionally in an operator group), bond stake, and unbond free
/// stake, withdrawable after `unbondingDelay`. The market locks stakeFactor * price per
/// assignment and releases, credits or slashes it at settlement.
abstract contract ProviderRegistry {
    /// One slot per provider: everything assign and settle touch.
    struct Provider {
        uint56 stake; // bonded stake, locked part included
        uint56 locked; // stake locked by open assignments
        uint56 earned; // payments credited, claimable with claim()
        uint32 completed; // assignments paid as part of a majority
        uint24 slashed; // assignments slashed
        uint24 group; // operator group id; 0 means none declared
        bool registered;
    }

    struct Unbonding {
        uint64 amount;
        uint40 readyAt;
    }

    IERC20Permit public immutable token;
    uint64 public immutable minStake;
    uint32 public immutable unbondingDelay;

    mapping(address => Provider) internal _providers;
    mapping(address => Unbonding) internal unbondings;

    event ProviderRegistered(address indexed provider, uint24 group);
    event Staked(address indexed provider, uint64 amount, uint64 stake);
    event UnbondRequested(address indexed provider, uint64 amount, uint64 unbonding, uint40 readyAt);
    event Withdrawn(address indexed provider, uint64 amount);

    error AlreadyRegistered(address provider);
    error ProviderNotRegistered(address provider);
    error ZeroAmount();
    error StakeOverflow(uint256 stake);
    error InsufficientFreeStake(address provider, uint64 free, uint64 needed);
    error StakeBelowMinimum(address provider, uint64 stake, uint64 minimum);
    error NothingToWithdraw(address provider);
    error UnbondingNotReady(address provider, uint40 readyAt);
    error DuplicateProvider(address provider);
    error SameOperatorGroup(address provider, uint24 group);
    error TokenTransferFailed();

    constructor(IERC20Permit token_, uint64 minStake_, uint32 unbondingDelay_) {
        token = token_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
    }

    /// @notice Register the caller as a provider, optionally declaring an operator group:
    /// two providers of one group are never assigned to the same job.
    function register(uint24 group) external {
        Provider storage p = _providers[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        p.registered = true;
        p.group = group;
        emit ProviderRegistered(msg.sender, group);
    }

    /// @notice Bond `amount` more stake; this contract must be approved for it.
    function stake(uint64 amount) external {
        _stake(amount);
    }

    /// @notice Bond stake with an EIP-2612 permit in the same transaction.
    function stakeWithPermit(uint64 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        // A permit someone already submitted leaves the allowance in place: not fatal.
        try token.permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _stake(amount);
    }

    /// @notice Move `amount` of free stake into unbonding; the delay restarts.
    function requestUnbond(uint64 amount) external {
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
    function withdraw() external {
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

    /// Lock `amounts[i]` for each entry from `firstNew` on, after checking that the whole
    /// list holds distinct addresses in distinct operator groups (entries before `firstNew`
    /// were locked by an earlier assignment of the same job).
    function _lock(address[] calldata list, uint64[] memory amounts, uint256 firstNew) internal {
        uint256 n = list.length;
        uint24[] memory groups = new uint24[](n);
        for (uint256 i; i < n; ++i) {
            address who = list[i];
            Provider memory cur = _providers[who];
            if (i >= firstNew) {
                if (!cur.registered) revert ProviderNotRegistered(who);
                if (cur.stake < minStake) revert StakeBelowMinimum(who, cur.stake, minStake);
                uint64 free = cur.stake - cur.locked;
                if (amounts[i] > free) revert InsufficientFreeStake(who, free, amounts[i]);
                _providers[who].locked = cur.locked + uint56(amounts[i]);
            }
            groups[i] = cur.group;
            for (uint256 j; j < i; ++j) {
                if (list[j] == who) revert DuplicateProvider(who);
                if (cur.group != 0 && groups[j] == cur.group) {
                    revert SameOperatorGroup(who, cur.group);
                }
            }
        }
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
}
