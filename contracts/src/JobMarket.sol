// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20Permit} from "./IERC20Permit.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";

/// @title JobMarket: escrowed compute jobs settled by providers' signed results
/// @notice A requester escrows (redundancy + 1) * priceCap + fee in one transaction (permit +
/// deposit). The job's coordinator assigns staked providers at prices up to the cap, then
/// settles with the providers' EIP-712 signed reveals: the majority result is paid, providers
/// whose own signed result lost are slashed (to the requester), the coordinator gets exactly
/// the fee fixed at creation and the requester the rest. Payouts are credited and pulled with
/// `claim`. A requester can reclaim an escrow that was never settled by its deadline.
///
/// Storage: each job is ONE slot holding a 248-bit commitment to its terms and assignment
/// plus its status and provider count. Callers pass the terms (from the JobCreated event)
/// and the assignment (from ProviderAssigned events) back in; the contract recomputes the
/// commitment and refuses anything else. The provider registry is the inherited half, so
/// escrows, stakes and credits are held in this contract's one token balance.
///
/// Nobody can withhold agreed work: an assigned provider may commit and reveal on chain
/// itself; settle counts an on-chain reveal the coordinator left out, and after the settle
/// deadline anyone can `finalize` a job whose on-chain reveals hold a majority (the fee then
/// goes back to the requester). `reclaim` refunds only when no such majority exists.
contract JobMarket is ProviderRegistry {
    // Job status (low 3 bits of the job slot)
    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_OPEN = 1;
    uint8 public constant STATUS_ASSIGNED = 2;
    uint8 public constant STATUS_SETTLED = 3;
    uint8 public constant STATUS_RECLAIMED = 4;
    uint8 public constant STATUS_CANCELLED = 5;
    // Comparison mode: exact results (majority by equal digests) or tolerance (the
    // coordinator names the winning group; nobody is slashed)
    uint8 public constant MODE_EXACT = 0;
    uint8 public constant MODE_TOLERANCE = 1;
    // What a settlement entry carries for one assigned provider
    uint8 public constant KIND_NONE = 0; // nothing signed: stake released, not paid
    uint8 public constant KIND_REVEAL = 1; // signed Reveal: value = result, salt = salt
    uint8 public constant KIND_COMMIT = 2; // signed Commit never revealed: value = commitHash

    uint256 public constant MAX_REDUNDANCY = 5;
    uint256 public constant MAX_BATCH = 64;
    uint256 public constant MAX_SPEC_CID_LENGTH = 128;
    uint256 public constant MAX_JOB_DURATION = 90 days;

    bytes32 public constant COMMIT_TYPEHASH =
        keccak256("Commit(bytes32 jobId,address provider,bytes32 commitHash)");
    bytes32 public constant REVEAL_TYPEHASH =
        keccak256("Reveal(bytes32 jobId,address provider,bytes32 result,bytes32 salt)");
    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    uint256 private constant HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant META_MASK = 0xff; // status (bits 0-2), provider count (bits 3-5)

    /// A job's immutable terms, fixed at creation and emitted in JobCreated.
    struct Terms {
        address requester;
        address coordinator;
        uint8 redundancy;
        uint8 mode;
        uint64 priceCap; // per provider
        uint64 fee; // the coordinator's, fixed here
        uint32 assignDeadline;
        uint32 commitDeadline;
        uint32 settleDeadline;
    }

    struct JobParams {
        bytes32 specDigest; // sha2-256 digest inside the spec's CID
        bytes specCid; // the full CID, emitted only
        address coordinator;
        uint8 redundancy;
        uint8 mode;
        uint64 priceCap;
        uint64 fee;
        uint32 assignDeadline;
        uint32 commitDeadline;
        uint32 settleDeadline;
    }

    /// EIP-2612 permit for exactly the escrow; deadline 0 means "allowance already given".
    struct PermitSig {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    struct Signed {
        uint8 kind;
        bytes32 value;
        bytes32 salt;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    struct Settlement {
        bytes32 jobId;
        Terms terms;
        address[] providers; // the full assignment, in order
        uint64[] prices;
        Signed[] signed; // one entry per provider
        uint256 winners; // tolerance jobs: bit i set = provider i is in the winning group
    }

    /// A provider's own on-chain commitment and reveal for one assignment index.
    struct OnChainEntry {
        bytes32 commitHash;
        bytes32 result;
        bool revealed;
    }

    /// One slot per party: credited balance, lifetime credits (keeps the slot non-zero after
    /// a claim, so the next credit is cheap) and the requester's job nonce.
    struct Account {
        uint96 owed;
        uint96 lifetime;
        uint64 nonce;
    }

    uint64 public immutable stakeFactor;
    uint256 private immutable cachedChainId;
    bytes32 private immutable cachedDomainSeparator;

    mapping(bytes32 => uint256) private jobSlots;
    mapping(address => Account) private accounts;
    mapping(bytes32 => OnChainEntry) private onChain; // key: keccak256(jobId, index)
    bool private transient entered;

    event JobCreated(
        bytes32 indexed jobId,
        address indexed requester,
        address indexed coordinator,
        bytes32 specDigest,
        bytes specCid,
        uint8 redundancy,
        uint8 mode,
        uint64 priceCap,
        uint64 fee,
        uint32 assignDeadline,
        uint32 commitDeadline,
        uint32 settleDeadline,
        uint256 escrow
    );
    event ProviderAssigned(
        bytes32 indexed jobId, address indexed provider, uint64 price, uint8 index
    );
    event JobSettled(
        bytes32 indexed jobId, bytes32 result, uint256 winners, uint256 slashed, uint256 refund
    );
    event ProviderSlashed(bytes32 indexed jobId, address indexed provider, uint64 amount);
    event ProviderCommitted(bytes32 indexed jobId, address indexed provider, bytes32 commitHash);
    event ProviderRevealed(
        bytes32 indexed jobId, address indexed provider, bytes32 result, bytes32 salt
    );
    event JobFinalized(bytes32 indexed jobId, address indexed caller);
    event JobReclaimed(bytes32 indexed jobId, uint256 refund);
    event JobCancelled(bytes32 indexed jobId, uint256 refund);
    event Claimed(address indexed account, uint256 amount);

    error InvalidRedundancy(uint8 redundancy);
    error InvalidMode(uint8 mode);
    error InvalidCoordinator();
    error InvalidPriceCap(uint64 priceCap);
    error InvalidSpecCid(uint256 length);
    error InvalidDeadlines();
    error JobNotFound(bytes32 jobId);
    error WrongStatus(bytes32 jobId, uint8 status);
    error RecordMismatch(bytes32 jobId);
    error NotCoordinator(bytes32 jobId, address caller);
    error NotRequester(bytes32 jobId, address caller);
    error AssignDeadlinePassed(bytes32 jobId, uint32 deadline);
    error SettleDeadlinePassed(bytes32 jobId, uint32 deadline);
    error ReclaimTooEarly(bytes32 jobId, uint32 deadline);
    error LengthMismatch();
    error TooManyProviders(uint256 count, uint256 max);
    error NothingToAssign(bytes32 jobId);
    error PriceAboveCap(uint64 price, uint64 priceCap);
    error InvalidSignatureKind(uint256 index, uint8 kind);
    error InvalidSignature(bytes32 jobId, address provider);
    error InvalidWinners(bytes32 jobId, uint256 winners);
    error NoMajority(bytes32 jobId);
    error BatchTooLarge(uint256 size, uint256 max);
    error NothingToClaim(address account);
    error NotAssignedProvider(bytes32 jobId, address caller);
    error CommitDeadlinePassed(bytes32 jobId, uint32 deadline);
    error AlreadyCommitted(bytes32 jobId, address provider);
    error NotCommitted(bytes32 jobId, address provider);
    error AlreadyRevealed(bytes32 jobId, address provider);
    error RevealMismatch(bytes32 jobId, address provider);
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

    constructor(IERC20Permit token_, uint64 minStake_, uint32 unbondingDelay_, uint64 stakeFactor_)
        ProviderRegistry(token_, minStake_, unbondingDelay_)
    {
        stakeFactor = stakeFactor_;
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------ requester

    /// @notice Create a job and escrow (redundancy + 1) * priceCap + fee from the caller.
    /// @return jobId keccak256(abi.encode(requester, requester's job nonce))
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
            assignDeadline: p.assignDeadline,
            commitDeadline: p.commitDeadline,
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
            // A permit someone already submitted (front-running) leaves the allowance in
            // place, so a failed permit is not fatal; transferFrom decides.
            try token.permit(
                msg.sender, address(this), escrow, permit.deadline, permit.v, permit.r, permit.s
            ) {} catch {}
        }
        if (!token.transferFrom(msg.sender, address(this), escrow)) revert TokenTransferFailed();
    }

    /// @notice Cancel a job nobody was assigned to yet; the whole escrow is credited back.
    function cancel(bytes32 jobId, Terms calldata t) external {
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_OPEN, STATUS_OPEN);
        if (_commitment(t, bytes32(0)) != slot & ~META_MASK) revert RecordMismatch(jobId);
        if (msg.sender != t.requester) revert NotRequester(jobId, msg.sender);
        jobSlots[jobId] = _seal(0, 0, STATUS_CANCELLED);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee);
        _credit(t.requester, refund);
        emit JobCancelled(jobId, refund);
    }

    /// @notice Take back the whole escrow of a job that was not assigned by its assign
    /// deadline or not settled by its settle deadline. Needs nothing from the coordinator:
    /// terms and assignment come from the job's events.
    function reclaim(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices
    ) external nonReentrant {
        uint256 slot = jobSlots[jobId];
        uint8 status = _expectStatus(jobId, slot, STATUS_OPEN, STATUS_ASSIGNED);
        uint256 n = providers.length;
        if (n != _countOf(slot) || prices.length != n) revert LengthMismatch();
        if (_commitment(t, _chainOf(providers, prices)) != slot & ~META_MASK) {
            revert RecordMismatch(jobId);
        }
        if (msg.sender != t.requester) revert NotRequester(jobId, msg.sender);
        uint32 deadline = status == STATUS_OPEN ? t.assignDeadline : t.settleDeadline;
        if (block.timestamp <= deadline) revert ReclaimTooEarly(jobId, deadline);
        if (n != 0) {
            // Agreed work revealed on chain is paid through finalize, never refunded.
            (bytes32[] memory values, uint256 revealed,) = _onChainOutcome(jobId, n);
            uint256 best = _majorityMask(values, revealed);
            if (_popcount(best) * 2 > _max(_popcount(revealed), t.redundancy)) {
                revert MajorityExists(jobId);
            }
        }
        jobSlots[jobId] = _seal(0, n, STATUS_RECLAIMED);
        uint64 factor = stakeFactor;
        for (uint256 i; i < n; ++i) {
            _providers[providers[i]].locked -= uint56(prices[i] * factor);
        }
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee);
        _credit(t.requester, refund);
        emit JobReclaimed(jobId, refund);
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

    // ---------------------------------------------------------------- coordinator

    /// @notice Assign providers. `providers`/`prices` is the job's whole assignment: the
    /// entries already assigned first (unchanged), then the new ones. The whole list has at
    /// most redundancy + 1 entries (the spare is a tie-breaker or spot-checker), distinct
    /// addresses and operator groups; each new provider gets stakeFactor * price locked.
    function assign(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices
    ) external nonReentrant {
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_OPEN, STATUS_ASSIGNED);
        uint256 n = providers.length;
        uint256 already = _countOf(slot);
        if (prices.length != n) revert LengthMismatch();
        if (n <= already) revert NothingToAssign(jobId);
        bytes32 chain;
        for (uint256 i; i < already; ++i) {
            chain = _link(chain, providers[i], prices[i]);
        }
        if (_commitment(t, chain) != slot & ~META_MASK) revert RecordMismatch(jobId);
        if (msg.sender != t.coordinator) revert NotCoordinator(jobId, msg.sender);
        if (block.timestamp > t.assignDeadline) {
            revert AssignDeadlinePassed(jobId, t.assignDeadline);
        }
        if (n > uint256(t.redundancy) + 1) revert TooManyProviders(n, uint256(t.redundancy) + 1);
        uint64 factor = stakeFactor;
        uint64[] memory locks = new uint64[](n);
        for (uint256 i = already; i < n; ++i) {
            uint64 price = prices[i];
            if (price > t.priceCap) revert PriceAboveCap(price, t.priceCap);
            chain = _link(chain, providers[i], price);
            locks[i] = price * factor;
            emit ProviderAssigned(jobId, providers[i], price, uint8(i));
        }
        jobSlots[jobId] = _seal(keccak256(abi.encode(t, chain)), n, STATUS_ASSIGNED);
        _lock(providers, locks, already);
    }

    /// @notice Settle one job with its providers' signed reveals.
    function settle(Settlement calldata s) external nonReentrant {
        _settle(s);
    }

    /// @notice Settle up to MAX_BATCH jobs in one transaction; any failure reverts them all.
    function settleBatch(Settlement[] calldata list) external nonReentrant {
        uint256 n = list.length;
        if (n > MAX_BATCH) revert BatchTooLarge(n, MAX_BATCH);
        for (uint256 i; i < n; ++i) {
            _settle(list[i]);
        }
    }

    // ------------------------------------------------------------------- provider

    /// @notice An assigned provider commits to keccak256(result ‖ salt) on chain itself,
    /// before the commit deadline, so that no coordinator can censor its answer.
    function commitOnChain(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices,
        uint256 index,
        bytes32 commitHash
    ) external {
        _checkAssigned(jobId, t, providers, prices, index);
        if (block.timestamp > t.commitDeadline) {
            revert CommitDeadlinePassed(jobId, t.commitDeadline);
        }
        OnChainEntry storage e = onChain[_entryKey(jobId, index)];
        if (e.commitHash != 0) revert AlreadyCommitted(jobId, msg.sender);
        e.commitHash = commitHash;
        emit ProviderCommitted(jobId, msg.sender, commitHash);
    }

    /// @notice Reveal an on-chain commitment, before the settle deadline.
    function revealOnChain(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices,
        uint256 index,
        bytes32 result,
        bytes32 salt
    ) external {
        _checkAssigned(jobId, t, providers, prices, index);
        if (block.timestamp > t.settleDeadline) {
            revert SettleDeadlinePassed(jobId, t.settleDeadline);
        }
        OnChainEntry storage e = onChain[_entryKey(jobId, index)];
        if (e.commitHash == 0) revert NotCommitted(jobId, msg.sender);
        if (e.revealed) revert AlreadyRevealed(jobId, msg.sender);
        if (keccak256(abi.encodePacked(result, salt)) != e.commitHash) {
            revert RevealMismatch(jobId, msg.sender);
        }
        e.result = result;
        e.revealed = true;
        emit ProviderRevealed(jobId, msg.sender, result, salt);
    }

    /// @notice After the settle deadline anyone can close an unsettled job whose on-chain
    /// reveals hold a majority: it is paid like a settlement (equal results only; an
    /// on-chain commit never revealed loses on exact jobs), and the unearned fee is refunded.
    function finalize(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices
    ) external nonReentrant {
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_ASSIGNED, STATUS_ASSIGNED);
        uint256 n = providers.length;
        if (n != _countOf(slot) || prices.length != n) revert LengthMismatch();
        if (_commitment(t, _chainOf(providers, prices)) != slot & ~META_MASK) {
            revert RecordMismatch(jobId);
        }
        if (block.timestamp <= t.settleDeadline) {
            revert FinalizeTooEarly(jobId, t.settleDeadline);
        }
        (bytes32[] memory values, uint256 revealed, uint256 committedOnly) =
            _onChainOutcome(jobId, n);
        uint256 winners = _majorityMask(values, revealed);
        uint256 quorum = _max(_popcount(revealed | committedOnly), t.redundancy);
        if (_popcount(winners) * 2 <= quorum) revert NoMajority(jobId);
        uint256 slashMask = t.mode == MODE_EXACT ? (revealed | committedOnly) & ~winners : 0;
        jobSlots[jobId] = _seal(0, n, STATUS_SETTLED);
        _conclude(jobId, t, providers, prices, values, winners, slashMask, false);
        emit JobFinalized(jobId, msg.sender);
    }

    // ---------------------------------------------------------------------- views

    /// @return status one of STATUS_*; assigned the number of providers assigned;
    /// commitment the 248-bit commitment to terms and assignment (0 once closed)
    function getJob(bytes32 jobId)
        external
        view
        returns (uint8 status, uint8 assigned, bytes32 commitment)
    {
        uint256 slot = jobSlots[jobId];
        return (uint8(slot & 7), uint8(_countOf(slot)), bytes32(slot & ~META_MASK));
    }

    /// @notice The commitment a job with these terms and this assignment must hold.
    function commitmentOf(Terms calldata t, address[] calldata providers, uint64[] calldata prices)
        external
        pure
        returns (bytes32)
    {
        return bytes32(_commitment(t, _chainOf(providers, prices)));
    }

    /// @notice A provider's on-chain commitment and reveal for assignment `index`.
    function onChainEntry(bytes32 jobId, uint256 index)
        external
        view
        returns (bytes32 commitHash, bytes32 result, bool revealed)
    {
        OnChainEntry memory e = onChain[_entryKey(jobId, index)];
        return (e.commitHash, e.result, e.revealed);
    }

    /// @return owed credited and not yet claimed (a provider's payments are in
    /// providerInfo's `earned`); lifetime all credits ever; nonce the next job nonce
    function accountOf(address account)
        external
        view
        returns (uint256 owed, uint256 lifetime, uint64 nonce)
    {
        Account memory a = accounts[account];
        return (a.owed, a.lifetime, a.nonce);
    }

    function jobIdFor(address requester, uint256 nonce) external pure returns (bytes32) {
        return keccak256(abi.encode(requester, nonce));
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    // -------------------------------------------------------------------- private

    function _settle(Settlement calldata s) private {
        bytes32 jobId = s.jobId;
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_ASSIGNED, STATUS_ASSIGNED);
        uint256 n = s.providers.length;
        if (n != _countOf(slot) || s.prices.length != n || s.signed.length != n) {
            revert LengthMismatch();
        }
        Terms calldata t = s.terms;
        if (_commitment(t, _chainOf(s.providers, s.prices)) != slot & ~META_MASK) {
            revert RecordMismatch(jobId);
        }
        if (msg.sender != t.coordinator) revert NotCoordinator(jobId, msg.sender);
        if (block.timestamp > t.settleDeadline) {
            revert SettleDeadlinePassed(jobId, t.settleDeadline);
        }
        (bytes32[] memory values, uint256 revealed, uint256 signedCount) =
            _verifySigned(jobId, s.providers, s.signed);

        uint256 winners;
        uint256 slashMask;
        if (t.mode == MODE_EXACT) {
            if (s.winners != 0) revert InvalidWinners(jobId, s.winners);
            winners = _majorityMask(values, revealed);
            // Every signed entry outside the majority lost: a differing reveal, or a commit
            // its provider never revealed.
            for (uint256 i; i < n; ++i) {
                if (s.signed[i].kind != KIND_NONE && winners & (1 << i) == 0) {
                    slashMask |= 1 << i;
                }
            }
        } else {
            winners = s.winners;
            if (winners == 0 || winners & ~revealed != 0) revert InvalidWinners(jobId, winners);
        }
        if (_popcount(winners) * 2 <= _max(signedCount, t.redundancy)) revert NoMajority(jobId);

        jobSlots[jobId] = _seal(0, n, STATUS_SETTLED);
        _conclude(jobId, t, s.providers, s.prices, values, winners, slashMask, true);
    }

    /// Pays a decided job: releases each provider's locked stake, credits winners their
    /// price (and a completed job), slashes `slashMask` to the requester, credits the fee
    /// to the coordinator (or back to the requester when it did not settle), refunds the rest.
    function _conclude(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices,
        bytes32[] memory values,
        uint256 winners,
        uint256 slashMask,
        bool feeToCoordinator
    ) private {
        uint64 factor = stakeFactor;
        uint256 paid;
        uint256 slashed;
        bytes32 result;
        uint256 n = providers.length;
        for (uint256 i; i < n; ++i) {
            address who = providers[i];
            uint64 price = prices[i];
            uint56 locked = uint56(price * factor);
            Provider memory p = _providers[who];
            p.locked -= locked;
            if (winners & (1 << i) != 0) {
                if (paid == 0) result = values[i];
                paid += price;
                p.earned += uint56(price);
                p.completed += 1;
            } else if (slashMask & (1 << i) != 0) {
                slashed += locked;
                p.stake -= locked;
                p.slashed += 1;
                emit ProviderSlashed(jobId, who, locked);
            }
            _providers[who] = p; // one slot, one write
        }
        uint256 fee = feeToCoordinator ? t.fee : 0;
        _credit(t.coordinator, fee);
        uint256 refund = _escrowOf(t.redundancy, t.priceCap, t.fee) - paid - fee + slashed;
        _credit(t.requester, refund);
        emit JobSettled(jobId, result, winners, slashMask, refund);
    }

    /// Checks every signed entry against its provider; an entry left empty counts the
    /// provider's own on-chain reveal, if any. Returns each entry's value, the bit mask of
    /// reveals and the number of signed entries (reveals and unrevealed commits).
    function _verifySigned(bytes32 jobId, address[] calldata providers, Signed[] calldata signed)
        private
        view
        returns (bytes32[] memory values, uint256 revealed, uint256 signedCount)
    {
        bytes32 domain = domainSeparator();
        uint256 n = providers.length;
        values = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            Signed calldata e = signed[i];
            bytes32 structHash;
            if (e.kind == KIND_NONE) {
                OnChainEntry storage own = onChain[_entryKey(jobId, i)];
                if (own.revealed) {
                    values[i] = own.result;
                    revealed |= 1 << i;
                    ++signedCount;
                }
                continue;
            } else if (e.kind == KIND_REVEAL) {
                structHash =
                    keccak256(abi.encode(REVEAL_TYPEHASH, jobId, providers[i], e.value, e.salt));
                revealed |= 1 << i;
            } else if (e.kind == KIND_COMMIT) {
                structHash = keccak256(abi.encode(COMMIT_TYPEHASH, jobId, providers[i], e.value));
            } else {
                revert InvalidSignatureKind(i, e.kind);
            }
            bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domain, structHash));
            if (uint256(e.s) > HALF_ORDER || ecrecover(digest, e.v, e.r, e.s) != providers[i]) {
                revert InvalidSignature(jobId, providers[i]);
            }
            values[i] = e.value;
            ++signedCount;
        }
    }

    /// On-chain entries of a job: values of reveals, the reveal mask, and the mask of
    /// commitments that were never revealed.
    function _onChainOutcome(bytes32 jobId, uint256 n)
        private
        view
        returns (bytes32[] memory values, uint256 revealed, uint256 committedOnly)
    {
        values = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            OnChainEntry storage e = onChain[_entryKey(jobId, i)];
            if (e.revealed) {
                values[i] = e.result;
                revealed |= 1 << i;
            } else if (e.commitHash != 0) {
                committedOnly |= 1 << i;
            }
        }
    }

    /// Checks that the caller is the provider at `index` of an assigned job's record.
    function _checkAssigned(
        bytes32 jobId,
        Terms calldata t,
        address[] calldata providers,
        uint64[] calldata prices,
        uint256 index
    ) private view {
        uint256 slot = jobSlots[jobId];
        _expectStatus(jobId, slot, STATUS_ASSIGNED, STATUS_ASSIGNED);
        uint256 n = providers.length;
        if (n != _countOf(slot) || prices.length != n) revert LengthMismatch();
        if (_commitment(t, _chainOf(providers, prices)) != slot & ~META_MASK) {
            revert RecordMismatch(jobId);
        }
        if (index >= n || providers[index] != msg.sender) {
            revert NotAssignedProvider(jobId, msg.sender);
        }
    }

    function _entryKey(bytes32 jobId, uint256 index) private pure returns (bytes32) {
        return keccak256(abi.encode(jobId, index));
    }

    function _max(uint256 a, uint256 b) private pure returns (uint256) {
        return a > b ? a : b;
    }

    /// The reveals sharing the most common result (the first such result on a tie; a tie
    /// never reaches a majority, which the caller checks).
    function _majorityMask(bytes32[] memory values, uint256 revealed)
        private
        pure
        returns (uint256 best)
    {
        uint256 bestCount;
        uint256 n = values.length;
        for (uint256 i; i < n; ++i) {
            if (revealed & (1 << i) == 0) continue;
            bytes32 value = values[i];
            uint256 mask;
            uint256 count;
            for (uint256 k = i; k < n; ++k) {
                if (revealed & (1 << k) != 0 && values[k] == value) {
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

    /// Reverts with JobNotFound or WrongStatus unless the status is `a` or `b`.
    function _expectStatus(bytes32 jobId, uint256 slot, uint8 a, uint8 b)
        private
        pure
        returns (uint8 status)
    {
        status = uint8(slot & 7);
        if (status == STATUS_NONE) revert JobNotFound(jobId);
        if (status != a && status != b) revert WrongStatus(jobId, status);
    }

    function _countOf(uint256 slot) private pure returns (uint256) {
        return (slot >> 3) & 7;
    }

    function _seal(bytes32 commitment, uint256 count, uint8 status) private pure returns (uint256) {
        return (uint256(commitment) & ~META_MASK) | (count << 3) | status;
    }

    function _commitment(Terms calldata t, bytes32 chain) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(t, chain))) & ~META_MASK;
    }

    function _chainOf(address[] calldata providers, uint64[] calldata prices)
        private
        pure
        returns (bytes32 chain)
    {
        uint256 n = providers.length;
        for (uint256 i; i < n; ++i) {
            chain = _link(chain, providers[i], prices[i]);
        }
    }

    /// Hash chain over the assignment, in order: link(prev, provider, price).
    function _link(bytes32 chain, address provider, uint64 price) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(chain, provider, price));
    }

    function _credit(address to, uint256 amount) private {
        if (amount == 0) return;
        // Every amount is below 7 * 2^64 (at most one escrow), far inside 96 bits.
        if (amount > type(uint96).max) revert AmountOverflow(amount);
        Account storage acct = accounts[to];
        Account memory a = acct;
        a.owed += uint96(amount);
        a.lifetime += uint96(amount);
        accounts[to] = a;
    }

    function _escrowOf(uint8 redundancy, uint64 priceCap, uint64 fee)
        private
        pure
        returns (uint256)
    {
        return (uint256(redundancy) + 1) * priceCap + fee;
    }

    function _popcount(uint256 x) private pure returns (uint256 c) {
        while (x != 0) {
            x &= x - 1;
            ++c;
        }
    }

    function _checkParams(JobParams calldata p) private view {
        if (p.redundancy == 0 || p.redundancy > MAX_REDUNDANCY) {
            revert InvalidRedundancy(p.redundancy);
        }
        if (p.mode > MODE_TOLERANCE) revert InvalidMode(p.mode);
        if (p.coordinator == address(0)) revert InvalidCoordinator();
        // Locked stake (stakeFactor * price) must fit the registry's 56-bit amounts.
        if (p.priceCap == 0 || uint256(p.priceCap) * stakeFactor > type(uint56).max) {
            revert InvalidPriceCap(p.priceCap);
        }
        uint256 cidLength = p.specCid.length;
        if (cidLength == 0 || cidLength > MAX_SPEC_CID_LENGTH) revert InvalidSpecCid(cidLength);
        if (
            p.assignDeadline <= block.timestamp || p.commitDeadline < p.assignDeadline
                || p.settleDeadline < p.commitDeadline
                || p.settleDeadline > block.timestamp + MAX_JOB_DURATION
        ) revert InvalidDeadlines();
    }

    function _emitCreated(bytes32 jobId, JobParams calldata p, uint256 escrow) private {
        emit JobCreated(
            jobId,
            msg.sender,
            p.coordinator,
            p.specDigest,
            p.specCid,
            p.redundancy,
            p.mode,
            p.priceCap,
            p.fee,
            p.assignDeadline,
            p.commitDeadline,
            p.settleDeadline,
            escrow
        );
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH, keccak256("gpumarket"), keccak256("1"), block.chainid, address(this)
            )
        );
    }
}
