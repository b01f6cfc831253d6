"""Pure verification logic, no I/O: callers hand in bytes and arrays.

``commitment`` (commit-reveal), ``compare`` and ``tensorfiles`` (exact and tolerance
comparison of outputs), ``merkle`` (trees and proofs), ``challenge`` and
``challenge_check`` (timed matmul benchmark challenge), ``policy`` (how much checking a
job gets), ``reputation`` (Beta posterior with decay), ``errors`` (ProofError subclasses).
"""
