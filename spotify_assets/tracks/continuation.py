"""Playlist continuation (RecSys Challenge 2018): seeded playlist splits, next-track examples,
held-out queries, the challenge's metrics and four rankers. No Dagster imports.

Metrics (Chen et al., "Recsys Challenge 2018: Automatic Music Playlist Continuation"), with G
the held-out tracks of a playlist and R the ranked list (500 tracks in the challenge):

* R-precision: ``(|G ∩ R[:|G|]| + 0.25·|A(R') ∩ A(G')|) / |G|``, where R' are the tracks of
  ``R[:|G|]`` that are not in G, G' the tracks of G that are not in ``R[:|G|]``, and ``A(·)``
  the set of their artists: an artist match earns 0.25, only for tracks not already
  credited as exact track matches, and each artist counts once.
* NDCG: ``DCG / IDCG`` with ``DCG = rel_1 + Σ_{i≥2} rel_i / log2(i)`` over R (binary track
  relevance) and ``IDCG`` the same sum for ``min(|G|, |R|)`` leading hits; 0 without hits.
* clicks: Spotify's "Recommended Songs" shows 10 tracks per refresh; clicks =
  ``floor((i - 1) / 10)`` for the 1-based position ``i`` of the first relevant track, 51 (one
  more than the 500-track maximum) when R holds none.

Rankers return (Q, k) int64 track ids (seeds excluded, -1 where fewer than k candidates
exist), ordered by score descending; every ranker backfills by popularity so that lists are
full. Scoring is dense in blocks of queries, so memory is bounded by ``block_elements``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "TRAIN",
    "VAL",
    "TEST",
    "SPLIT_NAMES",
    "ContinuationQueries",
    "clicks",
    "continuation_queries",
    "cooccurrence_rank",
    "embedding_rank",
    "evaluate_ranking",
    "als_rank",
    "bm25_query_weights",
    "factor_rank",
    "ndcg",
    "next_track_examples",
    "playlist_track_matrix",
    "popularity_rank",
    "r_precision",
    "ragged_rows",
    "seed_matrix",
    "split_playlists",
    "top_k",
]

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
NO_CLICK = 51


# --------------------------------------------------------------------------------------
# splits, examples, queries
# --------------------------------------------------------------------------------------


def split_playlists(pids: np.ndarray, seed: int, val_share: float = 0.1, test_share: float = 0.1) -> np.ndarray:
    """int8 (n,) split code (TRAIN 0, VAL 1, TEST 2) of each playlist id in ``pids``.

    A seeded permutation of the *sorted* pids assigns ``round(test_share·n)`` playlists to
    test and ``round(val_share·n)`` to val, so the result does not depend on input order.
    """
    pids = np.asarray(pids, dtype=np.int64)
    if not (0 <= val_share and 0 <= test_share and val_share + test_share <= 1):
        raise ValueError("val_share and test_share must be >= 0 and sum to <= 1")
    if np.unique(pids).size != pids.size:
        raise ValueError("pids must be unique")
    n = pids.size
    order = np.argsort(pids, kind="stable")
    perm = order[np.random.default_rng(np.random.SeedSequence([seed, 0x5B117])).permutation(n)]
    n_test, n_val = int(round(test_share * n)), int(round(val_share * n))
    codes = np.full(n, TRAIN, np.int8)
    codes[perm[:n_test]] = TEST
    codes[perm[n_test:n_test + n_val]] = VAL
    return codes


def _offsets(indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row's sequence index, row's offset inside its sequence), both int64 (nnz,)."""
    seq = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    return seq, np.arange(indptr[-1]) - indptr[seq]


def ragged_rows(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """int64 (counts.sum(),) the row indices ``starts[i] .. starts[i] + counts[i] - 1`` of
    every segment i, concatenated (a vectorized gather of ragged segments)."""
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.r_[0, np.cumsum(counts)[:-1]] if counts.size else np.zeros(0, np.int64)
    return np.repeat(starts - offsets, counts) + np.arange(counts.sum(), dtype=np.int64)


def next_track_examples(indptr: np.ndarray, tracks: np.ndarray, context: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (``context`` previous tracks -> next track) window of each sequence.

    Parameters
    ----------
    indptr : int64 (n_seq + 1,); tracks : int (nnz,) track ids in playlist order.

    Returns
    -------
    seq : int64 (n_ex,) sequence index of each example; offset : int64 (n_ex,) position of the
    next track inside its sequence (>= context); windows : int64 (n_ex, context + 1), the
    context oldest first, then the next track in the last column.
    """
    tracks = np.asarray(tracks, dtype=np.int64)
    seq, offset = _offsets(indptr)
    rows = np.flatnonzero(offset >= context)
    windows = tracks[rows[:, None] + np.arange(-context, 1)[None, :]]
    return seq[rows], offset[rows], windows


@dataclass(frozen=True)
class ContinuationQueries:
    """Held-out playlists: the first ``n_seed`` tracks are given, the rest must be found.

    seq : int64 (Q,) index of each query's sequence in the input.
    seeds : int64 (Q, n_seed) seed track ids in playlist order.
    truth_indptr : int64 (Q + 1,); truth : int64 (nnz,) held-out track ids (unique per
        query, seeds removed, ascending).
    """

    seq: np.ndarray
    seeds: np.ndarray
    truth_indptr: np.ndarray
    truth: np.ndarray

    @property
    def size(self) -> int:
        return int(self.seq.size)

    def subset(self, rows: np.ndarray) -> ContinuationQueries:
        """The queries at ``rows`` (int64 (m,)), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.diff(self.truth_indptr)[rows]
        starts = self.truth_indptr[rows]
        gather = ragged_rows(starts, lengths)
        return ContinuationQueries(self.seq[rows], self.seeds[rows], np.r_[0, np.cumsum(lengths)].astype(np.int64),
                                   self.truth[gather])


def continuation_queries(indptr: np.ndarray, tracks: np.ndarray, n_seed: int = 5,
                         min_held_out: int = 1) -> ContinuationQueries:
    """Queries from every sequence with at least ``min_held_out`` distinct tracks beyond the
    first ``n_seed`` (that are not themselves seeds).

    indptr : int64 (n_seq + 1,); tracks : int (nnz,) track ids in playlist order.
    """
    tracks = np.asarray(tracks, dtype=np.int64)
    seq, offset = _offsets(indptr)
    lengths = np.diff(indptr)
    candidates = np.flatnonzero(lengths > n_seed)
    seeds_all = np.full((indptr.size - 1, n_seed), -1, np.int64)
    seeds_all[candidates] = tracks[indptr[candidates][:, None] + np.arange(n_seed)[None, :]]
    held = offset >= n_seed
    h_seq, h_track = seq[held], tracks[held]
    # drop held-out tracks that repeat a seed, and repeats inside the held-out part
    is_seed = (seeds_all[h_seq] == h_track[:, None]).any(axis=1)
    h_seq, h_track = h_seq[~is_seed], h_track[~is_seed]
    width = int(tracks.max()) + 1 if tracks.size else 1
    keys = np.unique(h_seq * width + h_track)
    h_seq, h_track = keys // width, keys % width
    per_seq = np.bincount(h_seq, minlength=indptr.size - 1)
    chosen = np.flatnonzero(per_seq >= max(1, min_held_out))
    keep = np.isin(h_seq, chosen)
    counts = per_seq[chosen]
    return ContinuationQueries(chosen.astype(np.int64), seeds_all[chosen],
                               np.r_[0, np.cumsum(counts)].astype(np.int64), h_track[keep])


def playlist_track_matrix(indptr: np.ndarray, tracks: np.ndarray, n_tracks: int) -> sp.csr_matrix:
    """float32 (n_seq, n_tracks) binary CSR: 1 where a track occurs in a sequence."""
    seq, _ = _offsets(indptr)
    matrix = sp.csr_matrix((np.ones(seq.size, np.float32), (seq, np.asarray(tracks, dtype=np.int64))),
                           shape=(indptr.size - 1, n_tracks))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def _hits(recommended: np.ndarray, truth_indptr: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """bool (Q, K): recommended[q, i] is one of query q's held-out tracks."""
    recommended = np.asarray(recommended, dtype=np.int64)
    q = recommended.shape[0]
    width = int(max(recommended.max(initial=0), truth.max(initial=0))) + 1
    truth_keys = np.repeat(np.arange(q), np.diff(truth_indptr)) * width + truth
    keys = np.arange(q)[:, None] * width + recommended
    return np.isin(keys, truth_keys) & (recommended >= 0)


def _check(recommended: np.ndarray, truth_indptr: np.ndarray) -> None:
    if recommended.ndim != 2 or recommended.shape[0] != truth_indptr.size - 1:
        raise ValueError(f"recommended must be (Q, K) with Q = {truth_indptr.size - 1}, got {recommended.shape}")
    if (np.diff(truth_indptr) <= 0).any():
        raise ValueError("every query needs at least one held-out track")


def r_precision(recommended: np.ndarray, truth_indptr: np.ndarray, truth: np.ndarray,
                track_artist: np.ndarray | None = None) -> np.ndarray:
    """float64 (Q,) R-precision with the challenge's 0.25 artist-level partial credit.

    recommended : int64 (Q, K) ranked track ids (-1 = empty slot).
    truth_indptr : int64 (Q + 1,); truth : int64 (nnz,) held-out track ids (unique per query).
    track_artist : int (n_tracks,) artist id of each track; None gives track-level R-precision.
    """
    recommended = np.asarray(recommended, dtype=np.int64)
    _check(recommended, truth_indptr)
    n_q, k = recommended.shape
    g = np.diff(truth_indptr)
    hits = _hits(recommended, truth_indptr, truth)
    window = np.arange(k)[None, :] < g[:, None]
    track_hits = (hits & window).sum(axis=1)
    if track_artist is None:
        return track_hits / g
    track_artist = np.asarray(track_artist, dtype=np.int64)
    n_artists = int(track_artist.max(initial=0)) + 1
    # R': non-matching recommendations inside the |G| window; G': held-out tracks not retrieved there
    rq, rpos = np.nonzero(window & ~hits & (recommended >= 0))
    r_keys = np.unique(rq * n_artists + track_artist[recommended[rq, rpos]])
    tq = np.repeat(np.arange(n_q), g)
    width = int(max(recommended.max(initial=0), truth.max(initial=0))) + 1
    found_keys = (np.arange(n_q)[:, None] * width + recommended)[window & (recommended >= 0)]
    retrieved = np.isin(tq * width + truth, found_keys)
    g_keys = np.unique(tq[~retrieved] * n_artists + track_artist[truth[~retrieved]])
    shared = r_keys[np.isin(r_keys, g_keys)]
    artist_hits = np.bincount(shared // n_artists, minlength=n_q)
    return (track_hits + 0.25 * artist_hits) / g


def _discounts(k: int) -> np.ndarray:
    """float64 (k,): 1 for the first position, 1/log2(i) for 1-based positions i >= 2."""
    positions = np.arange(1, k + 1, dtype=np.float64)
    return np.where(positions == 1, 1.0, 1.0 / np.log2(np.maximum(positions, 2)))


def ndcg(recommended: np.ndarray, truth_indptr: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """float64 (Q,) NDCG of the whole ranked list (binary track relevance), challenge discounts."""
    recommended = np.asarray(recommended, dtype=np.int64)
    _check(recommended, truth_indptr)
    k = recommended.shape[1]
    disc = _discounts(k)
    dcg = (_hits(recommended, truth_indptr, truth) * disc[None, :]).sum(axis=1)
    ideal = np.cumsum(disc)[np.minimum(np.diff(truth_indptr), k) - 1]
    return dcg / ideal


def clicks(recommended: np.ndarray, truth_indptr: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """int64 (Q,) Recommended-Songs clicks: ``floor((i - 1) / 10)`` for the 1-based position of
    the first relevant track, 51 when there is none."""
    recommended = np.asarray(recommended, dtype=np.int64)
    _check(recommended, truth_indptr)
    hits = _hits(recommended, truth_indptr, truth)
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), first // 10, NO_CLICK).astype(np.int64)


def evaluate_ranking(recommended: np.ndarray, queries: ContinuationQueries,
                     track_artist: np.ndarray | None = None) -> dict[str, float]:
    """Mean R-precision (with artist credit when ``track_artist`` is given), NDCG and clicks,
    plus track-level R-precision, over ``queries``."""
    rp = r_precision(recommended, queries.truth_indptr, queries.truth, track_artist)
    rp_tracks = r_precision(recommended, queries.truth_indptr, queries.truth)
    return {
        "queries": int(queries.size),
        "r_precision": float(rp.mean()) if rp.size else float("nan"),
        "r_precision_tracks": float(rp_tracks.mean()) if rp.size else float("nan"),
        "ndcg": float(ndcg(recommended, queries.truth_indptr, queries.truth).mean()) if rp.size else float("nan"),
        "clicks": float(clicks(recommended, queries.truth_indptr, queries.truth).mean()) if rp.size else float("nan"),
    }


# --------------------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------------------


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """int64 (Q, k) column indices of the ``k`` highest scores per row, best first.

    scores : float (Q, T), modified in place where ``exclude`` points (set to -inf).
    exclude : int (Q, s) columns to leave out (-1 entries ignored).
    Entries scoring -inf are never returned (-1 instead). Within the selection, equal scores
    are ordered by column; which of several tied columns make the cut at the k-th place is
    decided by ``np.argpartition`` (deterministic for the same input).
    """
    n_q, n_t = scores.shape
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        rows, cols = np.nonzero(exclude >= 0)
        scores[rows, exclude[rows, cols]] = -np.inf
    kk = min(k, n_t)
    if kk <= 0:
        return np.full((n_q, k), -1, np.int64)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n_t else np.tile(np.arange(n_t), (n_q, 1))
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    ranked = np.take_along_axis(part, order, axis=1).astype(np.int64)
    ranked[~np.isfinite(np.take_along_axis(picked, order, axis=1))] = -1
    if kk < k:
        ranked = np.pad(ranked, ((0, 0), (0, k - kk)), constant_values=-1)
    return ranked


def _popularity_key(popularity: np.ndarray) -> np.ndarray:
    """float64 (T,) in (0, 1): larger for more popular tracks, ties by lower id; distinct."""
    n = popularity.size
    order = np.lexsort((np.arange(n), -np.asarray(popularity, dtype=np.float64)))
    key = np.empty(n, np.float64)
    key[order] = (n - np.arange(n)) / (n + 1)
    return key


def _blocks(n_q: int, n_t: int, block_elements: int) -> list[slice]:
    rows = max(1, block_elements // max(n_t, 1))
    return [slice(s, min(s + rows, n_q)) for s in range(0, n_q, rows)]


def popularity_rank(popularity: np.ndarray, seeds: np.ndarray, k: int) -> np.ndarray:
    """int64 (Q, k): the most popular tracks (``popularity`` (T,), ties by id) minus each query's seeds."""
    seeds = np.asarray(seeds, dtype=np.int64)
    order = np.lexsort((np.arange(popularity.size), -np.asarray(popularity, dtype=np.float64)))
    head = order[: k + seeds.shape[1]]
    keep = ~(head[None, :, None] == seeds[:, None, :]).any(axis=2)  # (Q, k + s)
    # stable partition of each row: kept tracks first, in popularity order
    pos = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out = head[pos]
    out[~np.take_along_axis(keep, pos, axis=1)] = -1
    if out.shape[1] < k:  # a catalogue smaller than k
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out.astype(np.int64)


def cooccurrence_rank(train: sp.csr_matrix, seeds: np.ndarray, k: int, popularity: np.ndarray | None = None,
                      block_elements: int = 1 << 23) -> np.ndarray:
    """int64 (Q, k): tracks by how many training playlists they share with the seeds
    (item-item co-occurrence summed over seeds, ``S·Xᵀ·X``), then by popularity.

    train : (P, T) binary CSR of training playlists; seeds : int (Q, s) track ids (-1 = none).
    popularity : float (T,) backfill/tie order (default: column sums of ``train``).
    """
    train = sp.csr_matrix(train, dtype=np.float32)
    n_t = train.shape[1]
    seeds = np.asarray(seeds, dtype=np.int64)
    pop = np.asarray(train.sum(axis=0)).ravel() if popularity is None else popularity
    tie = _popularity_key(pop)
    train_t = train.T.tocsr()
    out = np.empty((seeds.shape[0], k), np.int64)
    for block in _blocks(seeds.shape[0], n_t, block_elements):
        s = seeds[block]
        query = seed_matrix(s, n_t)
        counts = ((query @ train_t) @ train).toarray().astype(np.float64)
        out[block] = top_k(counts + tie[None, :], k, exclude=s)  # integer counts: the tie key never reorders them
    return out


def embedding_rank(vectors: np.ndarray, vocab_track_ids: np.ndarray, n_tracks: int, seeds: np.ndarray, k: int,
                   popularity: np.ndarray, block_elements: int = 1 << 23) -> np.ndarray:
    """int64 (Q, k): item2vec nearest neighbours of the mean seed vector, then popularity.

    vectors : float32 (V, d) L2-normalised; vocab_track_ids : int64 (V,) track id of each row.
    seeds : int (Q, s); seeds outside the vocabulary are ignored, and a query with none in it
    falls back to popularity. Tracks outside the vocabulary rank after every embedded track,
    by popularity.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    seeds = np.asarray(seeds, dtype=np.int64)
    row_of = np.full(n_tracks, -1, np.int64)
    row_of[np.asarray(vocab_track_ids, dtype=np.int64)] = np.arange(vectors.shape[0])
    seed_rows = np.where(seeds >= 0, row_of[np.maximum(seeds, 0)], -1)
    present = seed_rows >= 0
    query = np.einsum("qs,qsd->qd", present.astype(np.float32), vectors[np.maximum(seed_rows, 0)])
    norms = np.linalg.norm(query, axis=1, keepdims=True)
    query = np.divide(query, norms, out=np.zeros_like(query), where=norms > 0)
    backfill = _popularity_key(popularity) - 3.0  # below any cosine (>= -1)
    out = np.empty((seeds.shape[0], k), np.int64)
    for block in _blocks(seeds.shape[0], n_tracks, block_elements):
        scores = np.tile(backfill, (query[block].shape[0], 1))
        scores[:, vocab_track_ids] = np.where(norms[block] > 0, query[block] @ vectors.T, backfill[vocab_track_ids])
        out[block] = top_k(scores, k, exclude=seeds[block])
    return out


def bm25_query_weights(train: sp.csr_matrix, queries: sp.csr_matrix, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """float32 CSR: BM25 weights of binary ``queries`` (Q, T) rows with the *training*
    matrix's statistics (``implicit.nearest_neighbours.bm25_weight``'s formula: idf
    ``log(P) - log1p(df)``, length norm ``(1 - b) + b·len / mean train len``), so a folded-in
    row is weighted as if it had been one of the training rows."""
    train = sp.csr_matrix(train, dtype=np.float32)
    queries = sp.csr_matrix(queries, dtype=np.float32)
    n_p = train.shape[0]
    idf = np.log(max(n_p, 1)) - np.log1p(np.bincount(train.indices, minlength=train.shape[1]))
    average = float(np.asarray(train.sum(axis=1)).mean()) if n_p else 1.0
    length_norm = (1.0 - b) + b * np.asarray(queries.sum(axis=1)).ravel() / max(average, 1e-12)
    rows = np.repeat(np.arange(queries.shape[0]), np.diff(queries.indptr))
    data = queries.data * (k1 + 1.0) / (k1 * length_norm[rows] + queries.data) * idf[queries.indices]
    return sp.csr_matrix((data.astype(np.float32), queries.indices, queries.indptr), shape=queries.shape)


def seed_matrix(seeds: np.ndarray, n_tracks: int) -> sp.csr_matrix:
    """float32 (Q, n_tracks) binary CSR of each query's seed tracks (-1 entries ignored)."""
    seeds = np.asarray(seeds, dtype=np.int64)
    rows, cols = np.nonzero(seeds >= 0)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, seeds[rows, cols])), shape=(seeds.shape[0], n_tracks))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def als_rank(train: sp.csr_matrix, seeds: np.ndarray, k: int, factors: int = 64, alpha: float = 10.0,
             regularization: float = 0.05, iterations: int = 15, seed: int = 0,
             block_elements: int = 1 << 23, popularity: np.ndarray | None = None) -> np.ndarray:
    """int64 (Q, k): ALS (``implicit``, BM25-weighted) fitted on the training playlists only.

    Each query's factors are then *folded in*: solved by the same regularised least squares
    as a training row, with the item factors fixed (``implicit``'s ``recalculate_user``), on
    its BM25-weighted seed row. The held-out playlists never enter the fit, so one
    playlist's queries cannot teach the item factors its own held-out tracks. A query
    without seeds has nothing to fold in: it gets the popularity list (``popularity`` (T,),
    default the column sums of ``train``).
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from spotify_assets.train.baselines import train_als

    seeds = np.asarray(seeds, dtype=np.int64)
    train = sp.csr_matrix(train, dtype=np.float32)
    fit = train_als(train, factors=factors, alpha=alpha, regularization=regularization, iterations=iterations,
                    seed=seed)
    solver = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha)
    solver.item_factors = fit.item_factors
    weighted = bm25_query_weights(train, seed_matrix(seeds, train.shape[1]))
    with threadpool_limits(1, "blas"):
        query_factors = solver.recalculate_user(np.arange(seeds.shape[0]), weighted)
    out = factor_rank(np.asarray(query_factors, np.float32), fit.item_factors, seeds, k, block_elements)
    empty = ~(seeds >= 0).any(axis=1)
    if empty.any():
        pop = np.asarray(train.sum(axis=0)).ravel() if popularity is None else popularity
        out[empty] = popularity_rank(pop, seeds[empty], k)
    return out


def factor_rank(query_factors: np.ndarray, item_factors: np.ndarray, seeds: np.ndarray, k: int,
                block_elements: int = 1 << 23) -> np.ndarray:
    """int64 (Q, k): tracks by ``query_factors @ item_factors.T`` (float32 (Q, d) and (T, d))."""
    query_factors = np.asarray(query_factors, dtype=np.float32)
    item_factors = np.asarray(item_factors, dtype=np.float32)
    out = np.empty((query_factors.shape[0], k), np.int64)
    for block in _blocks(query_factors.shape[0], item_factors.shape[0], block_elements):
        out[block] = top_k(query_factors[block] @ item_factors.T, k, exclude=seeds[block])
    return out
