"""Small helpers shared by the split stage: seeded streams, CSR pointers, verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def _indptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _check_csr(indptr: np.ndarray, values: np.ndarray, name: str) -> None:
    if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}_indptr must be non-decreasing CSR pointers starting at 0")
    if int(indptr[-1]) != values.size:
        raise ValueError(f"{name}_indptr ends at {int(indptr[-1])} but there are {values.size} {name} entries")


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.round(x, 12) + 0.5).astype(np.int64)


# --------------------------------------------------------------------------------------
# verdicts (used by asset checks)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A validator's answer: ``passed``, the number of offending items, and details for
    asset-check metadata (plain ints/floats/strings). Unpacks as ``(passed, failures)``."""

    passed: bool
    failures: int
    details: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.passed, self.failures))


def _verdict(failures: int, **details) -> Verdict:
    return Verdict(passed=failures == 0, failures=int(failures), details=details)


# Sampling runs over blocks of consecutive users holding about ``_BLOCK_PAIRS`` liked pairs
# (a heavier user is a block of its own). Each block draws from its own seeded stream
# ``SeedSequence([seed, stream, block])``, so the draws depend on the seed and the data only
# (not on threads or timing), and every temporary is bounded by the block (and stays in
# cache) instead of growing with all liked pairs.
_BLOCK_PAIRS = 1 << 16
_SPLIT_BLOCK_PAIRS = 1 << 22  # split_users: one key sort per ~4M liked pairs


def _block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, block]))


def _user_blocks(liked_indptr: np.ndarray, target: int = _BLOCK_PAIRS) -> np.ndarray:
    """int64 user boundaries ``[0, …, n_users]`` of blocks of about ``target`` liked pairs."""
    n_users = liked_indptr.size - 1
    cuts = np.searchsorted(liked_indptr, np.arange(target, int(liked_indptr[-1]), target, dtype=np.int64))
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, n_users), [n_users]])).astype(np.int64)
