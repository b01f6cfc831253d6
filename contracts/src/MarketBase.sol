// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20Permit} from "./IERC20Permit.sol";

/// @title MarketBase: the market's types, storage, events, errors and shared rules
/// @notice The market is one contract at one address: `JobMarket` (the hot path: create,
/// assign, settle, claim) forwards every other call to `JobMarketExt` with delegatecall, so
/// both run on this one storage layout and one token balance. Splitting keeps each under the
/// EIP-170 code size limit without moving anything off the happy path. Rules both halves
/// apply (the quorum, billing, payout, records) live here once.
abstract contract MarketBase {
    /// Deployment parameters (checked by JobMarket's constructor).
    struct Config {
        IERC20Permit token;
        uint64 minStake;
        uint32 unbondingDelay;
        uint64 stakeFactor;
        uint64 minPrice;
        uint64 minCoordinatorBond;
        uint32 coordinatorUnbondDelay;
    }

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
    /// One slot per coordinator: its bond, the part unbonding and when that part is free.
    struct Coordinator {
        uint64 bond;
        uint64 unbonding;
        uint40 readyAt;
    }
    IERC20Permit public immutable token;
    uint64 public immutable minStake;
    uint32 public immutable unbondingDelay;
    uint64 public immutable minCoordinatorBond;
    uint32 public immutable coordinatorUnbondDelay;
    uint64 public immutable stakeFactor;
    uint64 public immutable minPrice;
    /// The market contract (the core). The extension runs in its context, so both compute
    /// the same EIP-712 domain and the extension refuses to be called directly.
    address internal immutable market;
    uint256 internal immutable cachedChainId;
    bytes32 internal immutable cachedDomainSeparator;

    // Storage: declared here only, so the core and the extension share one layout.
    mapping(address => Provider) internal _providers;
    mapping(address => Unbonding) internal unbondings;
    mapping(address => Coordinator) internal _coordinators;
    mapping(bytes32 => uint256) internal jobSlots;
    mapping(address => Account) internal accounts;
    mapping(bytes32 => OnChainEntry) internal onChain; // key: keccak256(abi.encode(jobId, seat))
    /// Total slashed stake, burned: held by this contract, owed to nobody.
    uint256 public burned;
    bool internal transient entered;
    event ProviderRegistered(address indexed provider, uint24 group);
    event Staked(address indexed provider, uint64 amount, uint64 stake);
    event UnbondRequested(address indexed provider, uint64 amount, uint64 unbonding, uint40 readyAt);
    event Withdrawn(address indexed provider, uint64 amount);
    event CoordinatorBonded(address indexed coordinator, uint64 amount, uint64 bond);
    event CoordinatorUnbondRequested(
        address indexed coordinator, uint64 amount, uint64 unbonding, uint40 readyAt
    );
    event CoordinatorWithdrawn(address indexed coordinator, uint64 amount);
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
    error InsufficientBond(address coordinator, uint64 bond, uint64 amount);
    /// Lock `amounts[i]` for each entry from `firstNew` on, after checking that the whole
    /// list holds distinct addresses in distinct operator groups (entries before `firstNew`
    /// were locked by an earlier assignment of the same job).
    function _lock(address[] memory list, uint64[] memory amounts, uint256 firstNew) internal {
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
    // Job status (low 3 bits of the job slot)
    uint8 internal constant STATUS_NONE = 0;
    uint8 internal constant STATUS_OPEN = 1;
    uint8 internal constant STATUS_ASSIGNED = 2;
    uint8 internal constant STATUS_SETTLED = 3;
    uint8 internal constant STATUS_RECLAIMED = 4;
    uint8 internal constant STATUS_CANCELLED = 5;
    uint8 internal constant STATUS_ABORTED = 6;
    uint8 internal constant MODE_EXACT = 0;
    uint8 internal constant MODE_TOLERANCE = 1;
    uint8 internal constant KIND_NONE = 0;
    uint8 internal constant KIND_REVEAL = 1; // value = result
    uint8 internal constant KIND_COMMIT = 2; // value = commitHash

    uint256 internal constant MAX_REDUNDANCY = 5;
    uint256 public constant MAX_BATCH = 64;
    uint256 internal constant MAX_SPEC_CID_LENGTH = 128;
    uint256 internal constant MAX_JOB_DURATION = 90 days;
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
    bytes32 internal constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    uint256 internal constant HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 internal constant META_MASK = 0xff;
    uint256 internal constant FLAG_ON_CHAIN = 0x40;
    struct Terms {
        address requester;
        address coordinator;
        uint8 redundancy;
        uint8 mode;
        uint64 priceCap;
        uint64 fee;
        uint64 timeoutMs;
        uint32 assignDeadline;
        uint32 commitWindow;
        uint32 revealWindow;
        uint32 spareDeadline;
        uint32 settleDeadline;
    }
    struct JobParams {
        bytes32 specDigest;
        bytes specCid;
        address coordinator;
        uint8 redundancy;
        uint8 mode;
        uint64 priceCap;
        uint64 fee;
        uint64 timeoutMs;
        uint32 assignDeadline;
        uint32 commitWindow;
        uint32 revealWindow;
        uint32 spareDeadline;
        uint32 settleDeadline;
    }
    /// EIP-2612 permit for exactly the escrow; deadline 0 means "allowance already given".
    struct PermitSig {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }
    struct Seat {
        address provider;
        uint64 price;
        uint64 ratePerHour;
        uint32 assignedAt;
    }
    struct Offer {
        address provider;
        uint64 price;
        uint64 ratePerHour;
        uint32 expiry;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }
    struct Signed {
        uint8 kind;
        bytes32 value;
        uint64 runtimeMs;
        bytes32 salt;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }
    struct Settlement {
        bytes32 jobId;
        Terms terms;
        Seat[] seats;
        Signed[] signed;
        uint256 winners; // tolerance jobs: bit i set = seat i wins
    }
    /// A seat's on-chain commitment and reveal (fallback path only).
    struct OnChainEntry {
        bytes32 commitHash;
        bytes32 result;
        uint64 runtimeMs;
        bool committed;
        bool revealed;
        bool votes;
    }
    struct Account {
        uint96 owed;
        uint96 lifetime;
        uint64 nonce;
    }
    /// What the one quorum rule sees: per-seat votes (result, runtime) and withheld seats.
    struct Tally {
        bytes32[] results;
        uint64[] runtimes;
        uint256 votes;
        uint256 withheld;
    }

    /// The job's terms, packed (the bindings unpack them by these layouts, low bits first):
    /// `money` = redundancy (8) | mode (8) | priceCap (64) | fee (64) | timeoutMs (64);
    /// `times` = assignDeadline | commitWindow | revealWindow | spareDeadline |
    /// settleDeadline (32 each). Packing saves about 2,000 gas of log data per job.
    event JobCreated(
        bytes32 indexed jobId,
        address indexed requester,
        address indexed coordinator,
        bytes32 specDigest,
        bytes specCid,
        uint256 money,
        uint256 times,
        uint256 escrow
    );
    /// `seatInfo` = price (64) | ratePerHour (64) | assignedAt (32) | seat (8), low bits first.
    event ProviderAssigned(bytes32 indexed jobId, address indexed provider, uint256 seatInfo);
    event ProviderCommitted(
        bytes32 indexed jobId, address indexed provider, uint8 seat, bytes32 commitHash
    );
    event ProviderRevealed(
        bytes32 indexed jobId,
        address indexed provider,
        uint8 seat,
        bytes32 result,
        uint64 runtimeMs,
        bytes32 salt,
        bool votes
    );
    event JobSettled(
        bytes32 indexed jobId,
        bytes32 result,
        uint256 winners,
        uint256 slashMask,
        uint256[] paidAndBilled,
        uint256 refund
    );
    event ProviderSlashed(bytes32 indexed jobId, address indexed provider, uint64 amount);
    event SettlementSkipped(bytes32 indexed jobId, bytes4 reason);
    event JobFinalized(bytes32 indexed jobId, address indexed caller);
    event JobReclaimed(bytes32 indexed jobId, uint256 refund);
    event JobCancelled(bytes32 indexed jobId, uint256 refund);
    event JobAborted(bytes32 indexed jobId, uint256 refund);
    event Claimed(address indexed account, uint256 amount);
    error TokenDecimals(uint8 decimals);
    error InvalidConstructorArgument(string name);
    error InvalidRedundancy(uint8 redundancy);
    error InvalidMode(uint8 mode);
    error CoordinatorNotBonded(address coordinator);
    error InvalidPriceCap(uint64 priceCap);
    error InvalidSpecCid(uint256 length);
    error InvalidTimeout(uint64 timeoutMs);
    error InvalidDeadlines();
    error JobNotFound(bytes32 jobId);
    error WrongStatus(bytes32 jobId, uint8 status);
    error RecordMismatch(bytes32 jobId);
    error NotCoordinator(bytes32 jobId, address caller);
    error NotRequester(bytes32 jobId, address caller);
    error AssignDeadlinePassed(bytes32 jobId, uint32 deadline);
    error SpareDeadlinePassed(bytes32 jobId, uint32 deadline);
    error SettleDeadlinePassed(bytes32 jobId, uint32 deadline);
    error SettleTooEarly(bytes32 jobId, uint8 seat);
    error ReclaimTooEarly(bytes32 jobId, uint32 deadline);
    error LengthMismatch();
    error TooManyProviders(uint256 count, uint256 max);
    error NothingToAssign(bytes32 jobId);
    error PriceAboveCap(uint64 price, uint64 priceCap);
    error PriceBelowMinimum(uint64 price, uint64 minimum);
    error InvalidRate(address provider);
    error OfferExpired(bytes32 jobId, address provider, uint32 expiry);
    error InvalidAccept(bytes32 jobId, address provider);
    error InvalidSignatureKind(uint256 index, uint8 kind);
    error InvalidSignature(bytes32 jobId, address provider);
    error InvalidReceipt(bytes32 jobId, address provider);
    error InvalidWinners(bytes32 jobId, uint256 winners);
    error NoMajority(bytes32 jobId);
    error BatchTooLarge(uint256 size, uint256 max);
    error NothingToClaim(address account);
    error NotAssignedProvider(bytes32 jobId, address caller);
    error CommitDeadlinePassed(bytes32 jobId, uint32 deadline);
    error AlreadyCommitted(bytes32 jobId, address provider);
    error AlreadyRevealed(bytes32 jobId, address provider);
    error RevealMismatch(bytes32 jobId, address provider);
    error RevealNotOpen(bytes32 jobId, uint32 opensAt);
    error RevealWindowClosed(bytes32 jobId, uint32 closedAt);
    error CommittedOnChain(bytes32 jobId);
    error FinalizeTooEarly(bytes32 jobId, uint32 deadline);
    error MajorityExists(bytes32 jobId);
    error AmountOverflow(uint256 amount);
    error Reentrancy();
    modifier nonReentrant() {
        if (entered) revert Reentrancy();
        entered = true;
        _;
        entered = false;
    }

    constructor(Config memory c, address market_) {
        token = c.token;
        minStake = c.minStake;
        unbondingDelay = c.unbondingDelay;
        stakeFactor = c.stakeFactor;
        minPrice = c.minPrice;
        minCoordinatorBond = c.minCoordinatorBond;
        coordinatorUnbondDelay = c.coordinatorUnbondDelay;
        market = market_;
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    /// @notice The EIP-712 domain separator of every signature the market checks.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }
    /// The on-chain state alone (after the settle deadline, so after every reveal window).
    function _onChainTally(bytes32 jobId, uint256 slot, uint256 n)
        internal
        view
        returns (Tally memory tl)
    {
        tl.results = new bytes32[](n);
        tl.runtimes = new uint64[](n);
        if (slot & FLAG_ON_CHAIN == 0) return tl;
        for (uint256 i; i < n; ++i) {
            OnChainEntry memory oc = onChain[_entryKey(jobId, i)];
            if (oc.revealed && oc.votes) {
                tl.results[i] = oc.result;
                tl.runtimes[i] = oc.runtimeMs;
                tl.votes |= 1 << i;
            } else if (oc.committed && !oc.revealed) {
                tl.withheld |= 1 << i;
            }
        }
    }
    /// THE quorum rule: best = the largest group of equal votes (first on a tie),
    /// decided = 2 * |best| > max(redundancy, votes + withheld).
    function _decide(Tally memory tl, uint8 redundancy)
        internal
        pure
        returns (uint256 best, bool decided)
    {
        best = _bestGroup(tl);
        decided = _popcount(best) * 2 > _quorum(tl, redundancy);
    }
    function _quorum(Tally memory tl, uint8 redundancy) internal pure returns (uint256 q) {
        q = _popcount(tl.votes | tl.withheld);
        if (q < redundancy) q = redundancy;
    }
    function _bestGroup(Tally memory tl) internal pure returns (uint256 best) {
        uint256 bestCount;
        uint256 votes = tl.votes;
        uint256 n = tl.results.length;
        for (uint256 i; i < n; ++i) {
            if (votes & (1 << i) == 0) continue;
            bytes32 value = tl.results[i];
            uint256 mask;
            uint256 count;
            for (uint256 k = i; k < n; ++k) {
                if (votes & (1 << k) != 0 && tl.results[k] == value) {
                    mask |= 1 << k;
                    ++count;
                }
            }
            if (count > bestCount) {
                bestCount = count;
                best = mask;
            }
        }
    }
    /// Pays a decided job: each seat's lock is released; winners are billed for time used
    /// and credited; slashed seats lose their whole lock (burned); the coordinator gets the
    /// fee when it settled; the requester the rest.
    function _conclude(
        bytes32 jobId,
        Terms calldata t,
        Seat[] calldata seats,
        Tally memory tl,
        uint256 winners,
        uint256 slashMask,
        bool feeToCoordinator
    ) internal {
        uint256 n = seats.length;
        jobSlots[jobId] = _seal(0, n, STATUS_SETTLED);
        uint256 cap = _billingCap(tl.runtimes, winners, t.timeoutMs);
        uint64 factor = stakeFactor;
        uint256 paid;
        uint256 burnedNow;
        uint256[] memory paidAndBilled = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            Seat calldata seat = seats[i];
            uint56 lock = uint56(seat.price * factor);
            Provider memory p = _providers[seat.provider];
            p.locked -= lock;
            if (winners & (1 << i) != 0) {
                uint256 pb = _bill(seat, tl.runtimes[i], cap);
                paidAndBilled[i] = pb;
                paid += pb >> 64;
                p.earned += uint56(pb >> 64);
                p.completed += 1;
            } else if (slashMask & (1 << i) != 0) {
                burnedNow += lock;
                p.stake -= lock;
                p.slashed += 1;
                emit ProviderSlashed(jobId, seat.provider, lock);
            }
            _providers[seat.provider] = p;
        }
        if (burnedNow != 0) burned += burnedNow;
        uint256 fee = feeToCoordinator ? t.fee : 0;
        _credit(t.coordinator, fee);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee) - paid - fee;
        _credit(t.requester, refund);
        emit JobSettled(
            jobId, tl.results[_lowestBit(winners)], winners, slashMask, paidAndBilled, refund
        );
    }
    /// min(2 * the smallest winning runtime, timeoutMs)
    function _billingCap(uint64[] memory runtimes, uint256 winners, uint64 timeoutMs)
        internal
        pure
        returns (uint256 cap)
    {
        uint256 m = type(uint64).max;
        uint256 n = runtimes.length;
        for (uint256 i; i < n; ++i) {
            if (winners & (1 << i) != 0 && runtimes[i] < m) m = runtimes[i];
        }
        cap = 2 * m;
        if (cap > timeoutMs) cap = timeoutMs;
    }
    /// pay << 64 | billed, with billed = min(runtime, cap) and
    /// pay = min(price, ceil(ratePerHour * billed / 3_600_000)).
    function _bill(Seat calldata seat, uint64 runtime, uint256 cap)
        internal
        pure
        returns (uint256)
    {
        uint256 billed = runtime < cap ? runtime : cap;
        uint256 pay = (uint256(seat.ratePerHour) * billed + 3_599_999) / 3_600_000;
        if (pay > seat.price) pay = seat.price;
        return (pay << 64) | billed;
    }
    function _lowestBit(uint256 x) internal pure returns (uint256 i) {
        while (x & 1 == 0) {
            x >>= 1;
            ++i;
        }
    }
    function _release(Seat[] calldata seats) internal {
        uint64 factor = stakeFactor;
        uint256 n = seats.length;
        for (uint256 i; i < n; ++i) {
            _providers[seats[i].provider].locked -= uint56(seats[i].price * factor);
        }
    }
    /// Checks status and record; returns the slot and status.
    function _load(bytes32 jobId, Terms calldata t, Seat[] calldata seats, uint8 a, uint8 b)
        internal
        view
        returns (uint256 slot, uint8 status)
    {
        slot = jobSlots[jobId];
        status = _expectStatus(jobId, slot, a, b);
        if (seats.length != _countOf(slot)) revert LengthMismatch();
        if (_commitment(t, _chainOf(seats)) != slot & ~META_MASK) revert RecordMismatch(jobId);
    }
    function _revealOpen(Seat[] calldata seats, uint32 commitWindow)
        internal
        pure
        returns (uint32 latest)
    {
        uint256 n = seats.length;
        for (uint256 i; i < n; ++i) {
            uint32 at = seats[i].assignedAt;
            if (at > latest) latest = at;
        }
        latest += commitWindow;
    }
    function _typed(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }
    function _validSig(bytes32 digest, uint8 v, bytes32 r, bytes32 s, address signer)
        internal
        pure
        returns (bool)
    {
        if (uint256(s) > HALF_ORDER) return false;
        address got = ecrecover(digest, v, r, s);
        return got != address(0) && got == signer;
    }
    function _validBytesSig(bytes32 digest, bytes calldata sig, address signer)
        internal
        pure
        returns (bool)
    {
        if (sig.length != 65) return false;
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        return _validSig(digest, v, r, s, signer);
    }
    function _entryKey(bytes32 jobId, uint256 seat) internal pure returns (bytes32) {
        return keccak256(abi.encode(jobId, seat));
    }
    function _expectStatus(bytes32 jobId, uint256 slot, uint8 a, uint8 b)
        internal
        pure
        returns (uint8 status)
    {
        status = uint8(slot & 7);
        if (status == STATUS_NONE) revert JobNotFound(jobId);
        if (status != a && status != b) revert WrongStatus(jobId, status);
    }
    function _countOf(uint256 slot) internal pure returns (uint256) {
        return (slot >> 3) & 7;
    }
    function _seal(bytes32 commitment, uint256 count, uint8 status) internal pure returns (uint256) {
        return (uint256(commitment) & ~META_MASK) | (count << 3) | status;
    }
    function _commitment(Terms calldata t, bytes32 chain) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(t, chain))) & ~META_MASK;
    }
    function _chainOf(Seat[] calldata seats) internal pure returns (bytes32 chain) {
        uint256 n = seats.length;
        for (uint256 i; i < n; ++i) {
            Seat calldata s = seats[i];
            chain = _link(chain, s.provider, s.price, s.ratePerHour, s.assignedAt);
        }
    }
    /// chain = keccak256(abi.encodePacked(prev, provider, price, ratePerHour, assignedAt))
    function _link(bytes32 chain, address provider, uint64 price, uint64 rate, uint32 at)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(chain, provider, price, rate, at));
    }
    function _credit(address to, uint256 amount) internal {
        if (amount == 0) return;
        if (amount > type(uint96).max) revert AmountOverflow(amount);
        Account memory a = accounts[to];
        a.owed += uint96(amount);
        a.lifetime += uint96(amount);
        accounts[to] = a;
    }
    function _escrowOf(uint8 redundancy, uint64 priceCap, uint64 fee)
        internal
        pure
        returns (uint256)
    {
        return (uint256(redundancy) + 2) * priceCap + fee;
    }
    function _popcount(uint256 x) internal pure returns (uint256 c) {
        while (x != 0) {
            x &= x - 1;
            ++c;
        }
    }
    function _buildDomainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH, keccak256("gpumarket"), keccak256("2"), block.chainid, market
            )
        );
    }
}
