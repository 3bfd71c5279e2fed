"""Negative sampling from the training interactions only (no Dagster imports).

Everything a model trains on comes from one (n_users, n_playlists) binary CSR, the
*training interactions*: train-split likes, feedback likes and owned playlists
(:func:`spotify_assets.split.training_interactions`). Negatives are playlists outside a
user's interactions, re-drawn every epoch:

``"uniform"``
    uniform over the playlists the user has not interacted with;
``"popularity"``
    proportional to ``(1 + interactions of the playlist) ** exponent`` over the same set;
``"hard"``
    the model's own ranking mines them: of ``K`` uniform candidates, the one the current
    model scores highest that is not an interaction (``BPRModule.mine`` in
    :mod:`spotify_assets.train.bpr`, with :func:`first_non_interaction`), so the hard pool follows the model
    and never the label score (which *is* the label function: sampling by it is label
    knowledge).

Nothing here can see validation or test positives: the only input is the interactions
matrix, and a test changes the held-out labels and checks the draws are byte-identical.

Exclusion is exact: a draw that lands on one of the user's interactions is redrawn (a
rejection loop over the few rejected entries; users interact with a tiny share of the
playlists, so a round rejects ~0.1% of the draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

NegativeMode = Literal["uniform", "popularity", "hard"]
NEGATIVE_MODES: tuple[str, ...] = ("uniform", "popularity", "hard")
#: rejection rounds before the remaining draws fall back to an exact enumeration
_MAX_ROUNDS = 64


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one epoch's draws: ``SeedSequence([seed, stream, epoch])``."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, epoch]))


@dataclass(frozen=True)
class InteractionSet:
    """Exact membership of (user, playlist) pairs in the training interactions.

    Attributes
    ----------
    keys : int64 (nnz,), sorted ``user * n_playlists + playlist`` of every interaction.
    indptr : int64 (n_users + 1,), the CSR row pointers (a user's interaction count).
    n_users, n_playlists : the matrix shape.
    """

    keys: np.ndarray
    indptr: np.ndarray
    n_users: int
    n_playlists: int

    @classmethod
    def from_csr(cls, interactions: sp.csr_matrix) -> InteractionSet:
        """From a (n_users, n_playlists) CSR; stored zeros and duplicates are ignored."""
        matrix = sp.csr_matrix(interactions, copy=True)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        n_users, n_playlists = matrix.shape
        rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
        keys = rows * n_playlists + matrix.indices.astype(np.int64)
        keys.sort()
        return cls(keys, matrix.indptr.astype(np.int64), int(n_users), int(n_playlists))

    def contains(self, users: np.ndarray, playlists: np.ndarray) -> np.ndarray:
        """bool array (broadcast shape of users and playlists): is the pair an interaction?

        In the C kernel where it builds (:func:`spotify_assets.train.native.load_bpr_kernel`):
        a binary search in the user's own row, a few cache misses per pair instead of ~20 for
        one over all the keys (the negative draws spent 88% of their time here); else
        :meth:`contains_searchsorted`. Both agree for users < n_users, playlists < n_playlists.
        """
        from spotify_assets.train.native import load_bpr_kernel  # imports torch: only when used

        kernel = load_bpr_kernel()
        if kernel is None:
            return self.contains_searchsorted(users, playlists)
        return kernel.contains(self.keys, self.indptr, self.n_playlists, users, playlists)

    def contains_searchsorted(self, users: np.ndarray, playlists: np.ndarray) -> np.ndarray:
        """:meth:`contains` by one ``np.searchsorted`` over all the keys (numpy only)."""
        query = np.asarray(users, np.int64) * self.n_playlists + np.asarray(playlists, np.int64)
        if self.keys.size == 0:
            return np.zeros(query.shape, bool)
        at = np.searchsorted(self.keys, query)
        return self.keys[np.minimum(at, self.keys.size - 1)] == query

    def block(self, users: np.ndarray) -> InteractionSet:
        """The interactions of ``users`` (int64 (b,), ascending) re-indexed 0..b-1: membership
        tests for one block search a block-sized array instead of all interactions."""
        users = np.asarray(users, np.int64)
        lo, hi = self.indptr[users], self.indptr[users + 1]
        counts = hi - lo
        entries = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(int(counts.sum()))
        playlists = self.keys[entries] % self.n_playlists
        local = np.repeat(np.arange(users.size, dtype=np.int64), counts)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return InteractionSet(local * self.n_playlists + playlists, indptr, int(users.size), self.n_playlists)

    def counts(self) -> np.ndarray:
        """int64 (n_users,): interactions per user."""
        return np.diff(self.indptr)

    def playlist_counts(self) -> np.ndarray:
        """int64 (n_playlists,): interactions per playlist."""
        return np.bincount(self.keys % self.n_playlists, minlength=self.n_playlists)


class NegativeSampler:
    """Draws playlists outside each user's interactions, uniformly or by popularity.

    Parameters
    ----------
    interactions : :class:`InteractionSet`.
    mode : "uniform" or "popularity" ("hard" mining draws its candidates uniformly here
        and ``BPRModule.mine`` picks among them with :func:`first_non_interaction`).
    popularity_exponent : weight ``(1 + count) ** exponent`` in "popularity" mode (0.75,
        as word2vec's unigram table).
    """

    def __init__(self, interactions: InteractionSet, mode: str = "uniform", popularity_exponent: float = 0.75):
        if mode not in NEGATIVE_MODES:
            raise ValueError(f"mode must be one of {NEGATIVE_MODES}, got {mode!r}")
        full = interactions.counts() >= interactions.n_playlists
        if full.any():
            raise ValueError(f"{int(full.sum())} users interacted with every playlist: no negative exists for them")
        self.interactions = interactions
        self.mode = mode
        self._cdf = None
        if mode == "popularity":
            weights = (1.0 + interactions.playlist_counts()) ** float(popularity_exponent)
            self._cdf = np.cumsum(weights / weights.sum())
            self._cdf[-1] = 1.0

    def _raw(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self.interactions.n_playlists, size=size, dtype=np.int64)
        return np.minimum(np.searchsorted(self._cdf, rng.random(size), side="right"),
                          self.interactions.n_playlists - 1).astype(np.int64)

    def draw(self, rng: np.random.Generator, users: np.ndarray, k: int = 1) -> np.ndarray:
        """int64 (B, k): ``k`` independent draws per user (int64 (B,)), none of them one of
        the user's interactions (repeats within a row are possible, as in independent SGD
        steps). Deterministic for a given generator state."""
        users = np.asarray(users, np.int64)
        out = self._raw(rng, (users.size, k))
        bad_rows, bad_cols = np.nonzero(self.interactions.contains(users[:, None], out))
        for _ in range(_MAX_ROUNDS):
            if bad_rows.size == 0:
                return out
            out[bad_rows, bad_cols] = self._raw(rng, bad_rows.size)
            still = self.interactions.contains(users[bad_rows], out[bad_rows, bad_cols])
            bad_rows, bad_cols = bad_rows[still], bad_cols[still]
        for r, c in zip(bad_rows.tolist(), bad_cols.tolist()):  # users with almost every playlist
            out[r, c] = _uniform_allowed(rng, self.interactions, int(users[r]))
        return out


def _uniform_allowed(rng: np.random.Generator, interactions: InteractionSet, user: int) -> int:
    """One uniform playlist outside ``user``'s interactions, by enumeration (rare fallback)."""
    lo, hi = interactions.indptr[user], interactions.indptr[user + 1]
    taken = interactions.keys[lo:hi] - user * interactions.n_playlists
    allowed = np.setdiff1d(np.arange(interactions.n_playlists), taken, assume_unique=True)
    return int(allowed[rng.integers(allowed.size)])


def first_non_interaction(users: np.ndarray, ranked: np.ndarray, interactions: InteractionSet,
                          fallback: np.ndarray) -> np.ndarray:
    """Per row, the first of ``ranked`` candidates that is not one of the user's interactions.

    Parameters
    ----------
    users : int64 (B,).
    ranked : int64 (B, t), each row's candidates best first (hard mining passes the top few
        of K uniform draws by the current model's score; see ``BPRModule.mine``).
    interactions : the training interactions (the only thing checked against).
    fallback : int64 (B,), an exact non-interaction per row, used when all ``t`` candidates
        are interactions (rare: a user's interactions are a tiny share of the playlists).

    Returns
    -------
    int64 (B,) negatives.
    """
    ranked = np.asarray(ranked, np.int64)
    usable = ~interactions.contains(np.asarray(users, np.int64)[:, None], ranked)
    out = ranked[np.arange(ranked.shape[0]), usable.argmax(axis=1)]
    none = ~usable.any(axis=1)
    out[none] = np.asarray(fallback, np.int64)[none]
    return out
