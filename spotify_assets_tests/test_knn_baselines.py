"""KNN equals brute force; baselines have the right shapes and order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.labeling import exploration_coefficients, label_users
from spotify_assets.metrics import sampled_metrics
from spotify_assets.models.baselines import Oracle, popularity_scores, random_scores, train_als
from spotify_assets.models.knn import brute_force_neighbors, knn_scores, top_k_neighbors


def _binary(rng, rows, cols, density):
    m = sp.random(rows, cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    m.data[:] = 1
    return m


@pytest.mark.parametrize("block_size", [1, 16, 500])
def test_blocked_knn_equals_brute_force(block_size: int) -> None:
    rng = np.random.default_rng(0)
    user_song = _binary(rng, 120, 40, 0.1)
    user_song[7] = 0  # a user without songs has no neighbours
    user_song.eliminate_zeros()
    user_song[8] = user_song[9]  # identical users: tie handling, similarity 1
    fast = top_k_neighbors(user_song, k=10, block_size=block_size)
    slow = brute_force_neighbors(user_song, k=10)
    np.testing.assert_allclose(fast.similarities, slow.similarities, rtol=1e-5)
    # neighbour ids agree wherever similarities are not tied with the next one
    assert (fast.neighbors[7] == -1).all()
    assert fast.neighbors[8, 0] == 9 and fast.similarities[8, 0] == pytest.approx(1.0)
    same = np.isclose(fast.similarities, slow.similarities)
    assert (fast.neighbors[same & (slow.similarities > 0)] >= 0).all()


def test_knn_scores_weight_neighbours_items() -> None:
    user_song = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    items = sp.csr_matrix(np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32))
    nb = top_k_neighbors(user_song, k=2)
    scores = knn_scores(nb, np.array([0, 2]), items)
    # user 0's only neighbour with a shared song is user 1 (sim 1), who vouches for playlist 0
    np.testing.assert_allclose(scores, [[1.0, 0.0], [0.0, 0.0]])


def test_baselines_order_on_labelled_data() -> None:
    rng = np.random.default_rng(2)
    user_song = _binary(rng, 300, 60, 0.1)
    playlist_song = _binary(rng, 200, 60, 0.1)
    e = exploration_coefficients(300, 0)
    labels = label_users(user_song, playlist_song, e)
    users = labels.liked_users()
    positives = sp.csr_matrix((np.ones(users.size, np.float32), (users, labels.liked_playlists)), shape=(300, 200))
    oracle = Oracle(user_song, playlist_song, e)
    # the oracle's candidate scores equal its full scores
    cands = rng.integers(0, 200, size=(5, 7))
    np.testing.assert_allclose(oracle.score_candidates(np.arange(5), cands),
                               np.take_along_axis(oracle.score_all(np.arange(5)), cands, axis=1))
    # on liked vs random candidates the oracle is perfect-ish, random is not
    liked_rows = np.flatnonzero(np.diff(labels.liked_indptr) > 0)[:50]
    pos = labels.liked_playlists[labels.liked_indptr[liked_rows]]
    negs = (pos[:, None] + 1 + rng.integers(0, 199, size=(liked_rows.size, 20))) % 200  # never the positive
    cand = np.concatenate([pos[:, None], negs], axis=1)
    assert sampled_metrics(oracle.score_candidates(liked_rows, cand))["mrr"] > 0.95
    assert sampled_metrics(random_scores(0, cand.shape))["mrr"] < 0.5
    assert popularity_scores(positives).shape == (200,)
    als = train_als(positives, factors=8, iterations=5, seed=0)
    assert als.user_factors.shape == (300, 8) and als.item_factors.shape == (200, 8)
