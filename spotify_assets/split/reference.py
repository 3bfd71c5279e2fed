"""Per-user loop references of the samplers."""

from __future__ import annotations

import numpy as np
from spotify_assets.split.users import TRAIN
from spotify_assets.split.sampling import EvalBatch, TripletSample


# --------------------------------------------------------------------------------------
# slow per-user references (tests compare the vectorized samplers with these)
# --------------------------------------------------------------------------------------


def _user_sets(liked_indptr, liked_playlists, owner, n_users):
    liked = [set(liked_playlists[liked_indptr[u]:liked_indptr[u + 1]].tolist()) for u in range(n_users)]
    owned: list[set[int]] = [set() for _ in range(n_users)]
    for j, o in enumerate(owner.tolist()):
        if o >= 0:
            owned[o].add(j)
    return liked, owned


def triplets_reference(liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, n_playlists, seed,
                       n_hard: int = 2, n_easy: int = 2) -> TripletSample:
    """Per-user loop with the same rules as :func:`sample_triplets` (different draws)."""
    rng = np.random.default_rng(seed)
    n_users = len(liked_indptr) - 1
    liked, owned = _user_sets(liked_indptr, liked_playlists, owner, n_users)
    rows, fallback = [], 0
    for u in range(n_users):
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in owned[u]]
        allowed = [j for j in range(n_playlists) if j not in liked[u] and j not in owned[u]]
        for i in range(liked_indptr[u], liked_indptr[u + 1]):
            if split[i] != TRAIN:
                continue
            for slot in range(n_hard + n_easy):
                if slot < n_hard and pool:
                    neg = pool[rng.integers(len(pool))]
                else:
                    fallback += slot < n_hard
                    neg = allowed[rng.integers(len(allowed))]
                rows.append((u, int(liked_playlists[i]), neg))
    return TripletSample(np.array(rows, dtype=np.int64).reshape(-1, 3), fallback)


def eval_batches_reference(liked_indptr, liked_playlists, split, which, hard_indptr, hard_playlists, owner, cold_users,
                           n_playlists, seed, n_negatives: int = 50) -> EvalBatch:
    """Per-row loop with the same rules as :func:`sample_eval_batches` (different draws)."""
    rng = np.random.default_rng(seed)
    n_users = len(liked_indptr) - 1
    liked, owned = _user_sets(liked_indptr, liked_playlists, owner, n_users)
    users, positives, negatives = [], [], []
    want_hard = n_negatives // 2
    for u in range(n_users):
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in owned[u]]
        allowed = [j for j in range(n_playlists) if j not in liked[u] and j not in owned[u]]
        for i in range(liked_indptr[u], liked_indptr[u + 1]):
            if split[i] != which:
                continue
            hard = list(rng.choice(pool, size=min(want_hard, len(pool)), replace=False)) if pool else []
            rest = [j for j in allowed if j not in set(hard)]
            easy = list(rng.choice(rest, size=n_negatives - len(hard), replace=False))
            users.append(u)
            positives.append(int(liked_playlists[i]))
            negatives.append([int(x) for x in hard + easy])
    return EvalBatch(np.array(users, dtype=np.int64), np.array(positives, dtype=np.int64),
                     np.array(negatives, dtype=np.int64).reshape(-1, n_negatives),
                     np.asarray(cold_users)[np.array(users, dtype=np.int64)] if users else np.zeros(0, bool))


