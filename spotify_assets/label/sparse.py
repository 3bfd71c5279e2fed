"""Sparse helpers of the labeler: scipy's CSR kernels (when importable) and CSR pointers."""

from __future__ import annotations

import numpy as np

try:  # scipy's SMMP kernel; the public ``@`` is the fallback if the private module moves
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - depends on the scipy build
    _sparsetools = None


def _indptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _group_by(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable counting sort: (permutation int64, group pointers int64 (n_keys + 1,)) such
    that ``keys[perm]`` is sorted and equal keys keep their input order. Uses scipy's CSR ->
    CSC kernel on a one-row matrix (linear time)."""
    n = keys.size
    if _sparsetools is not None and n < 2**31 - 1 and n_keys < 2**31 - 1:
        bp = np.empty(n_keys + 1, dtype=np.int32)
        bi = np.empty(n, dtype=np.int32)
        perm = np.empty(n, dtype=np.int32)
        _sparsetools.csr_tocsc(1, n_keys, np.array([0, n], dtype=np.int32), keys.astype(np.int32),
                               np.arange(n, dtype=np.int32), bp, bi, perm)
        return perm.astype(np.int64), bp.astype(np.int64)
    perm = np.argsort(keys, kind="stable")  # pragma: no cover - fallback
    return perm, _indptr(np.bincount(keys, minlength=n_keys))
