"""Blocked exact user-KNN equals the brute-force reference; scoring from neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.train.knn import (
    Neighbors,
    brute_force_neighbors,
    knn_scores,
    knn_scores_sparse,
    l2_normalize_rows,
    fold_in,
    top_k_neighbors,
)


def _user_song(seed: int = 0, n_users: int = 150, n_songs: int = 40, density: float = 0.08) -> sp.csr_matrix:
    """Binary user-song rows with planted ties: duplicated users, an empty user, equal sizes."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_songs)) < density).astype(np.float32)
    dense[7] = 0  # no songs: no neighbours, nobody's neighbour
    dense[9] = dense[8]  # identical users: similarity exactly 1
    dense[10] = dense[8]  # ... three of them: a tie for the first place
    dense[:, :6] = 0  # songs 0-5 belong to users 20-22 only
    dense[20, :] = 0
    dense[20, :3] = 1  # users 20 and 21 have the same size and overlap with 22: equal similarities
    dense[21, :] = 0
    dense[21, 3:6] = 1
    dense[22, :] = 0
    dense[22, [0, 3]] = 1
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("selection", ["sparse", "dense", "auto"])
@pytest.mark.parametrize("block_size", [1, 16, 1000])
@pytest.mark.parametrize("k", [1, 5, 200])  # 200 > users: rows padded with -1
def test_blocked_knn_equals_brute_force(block_size: int, k: int, selection: str) -> None:
    user_song = _user_song()
    fast = top_k_neighbors(user_song, k=k, block_size=block_size, selection=selection)
    slow = brute_force_neighbors(user_song, k=k)
    np.testing.assert_array_equal(fast.neighbors, slow.neighbors)
    np.testing.assert_array_equal(fast.similarities, slow.similarities)
    assert fast.neighbors.shape == (150, k) and fast.neighbors.dtype == np.int32
    assert fast.similarities.dtype == np.float32


@pytest.mark.parametrize("selection", ["sparse", "dense"])
def test_ties_self_and_empty_users(selection: str) -> None:
    nb = top_k_neighbors(_user_song(), k=4, block_size=32, selection=selection)
    # empty user: no neighbours and nobody's neighbour
    assert (nb.neighbors[7] == -1).all() and (nb.similarities[7] == 0).all()
    assert not (nb.neighbors == 7).any()
    # identical users: similarity 1, ties broken by the lower id, never itself
    assert nb.neighbors[8, :2].tolist() == [9, 10] and nb.similarities[8, :2].tolist() == [1.0, 1.0]
    assert nb.neighbors[10, :2].tolist() == [8, 9]
    assert (nb.neighbors != np.arange(150)[:, None]).all()
    # users 20 and 21 are equally similar to 22: the lower id first
    assert nb.neighbors[22, :2].tolist() == [20, 21]
    assert nb.similarities[22, 0] == nb.similarities[22, 1] == pytest.approx(1 / np.sqrt(6))
    # rows are sorted by similarity, padding at the end
    valid = nb.neighbors >= 0
    assert (np.diff(np.where(valid, nb.similarities, -1), axis=1) <= 0).all()


def test_similarities_are_cosines_of_normalized_rows() -> None:
    user_song = _user_song(seed=3)
    x = l2_normalize_rows(user_song).toarray().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(x[np.asarray(user_song.sum(axis=1)).ravel() > 0], axis=1), 1, rtol=1e-6)
    nb = top_k_neighbors(user_song, k=3)
    rows = np.repeat(np.arange(150), 3)
    valid = nb.neighbors.ravel() >= 0
    np.testing.assert_allclose(nb.similarities.ravel()[valid],
                               (x[rows[valid]] * x[nb.neighbors.ravel()[valid]]).sum(axis=1), rtol=1e-6)


def test_knn_scores_by_hand() -> None:
    # users 0 and 1 share every song (sim 1); user 2 shares one of 2 songs with user 3 (sim 1/2)
    user_song = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32))
    items = sp.csr_matrix(np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32))
    nb = top_k_neighbors(user_song, k=2)
    users = np.array([0, 2])
    scores = knn_scores(nb.neighbors[users], nb.similarities[users], items)
    # user 0: user 1 (sim 1) vouches for playlist 0, user 3 (sim 1/2) for both
    # user 2: user 3 (sim 1/sqrt(2)) vouches for both
    np.testing.assert_allclose(scores, [[1.5, 0.5], [2 ** -0.5, 2 ** -0.5]], rtol=1e-6)
    assert scores.dtype == np.float32 and scores.shape == (2, 2)
    # the whole-table form and the sparse form agree
    np.testing.assert_array_equal(knn_scores(nb, users, items), scores)
    np.testing.assert_array_equal(knn_scores_sparse(nb.neighbors[users], nb.similarities[users], items).toarray(),
                                  scores)


def test_users_without_neighbours_score_zero() -> None:
    items = sp.csr_matrix(np.eye(3, dtype=np.float32))
    nb = Neighbors(np.full((3, 2), -1, np.int32), np.zeros((3, 2), np.float32))
    assert not knn_scores(nb.neighbors, nb.similarities, items).any()


def test_fold_in_gives_users_without_history_their_neighbours_direction() -> None:
    vectors = np.array([[3.0, 0.0], [0.0, 4.0], [9.0, 9.0], [5.0, 5.0]], np.float32)
    has_history = np.array([True, True, False, False])
    # user 2's neighbours: 0 (sim .5) and 1 (sim .25); user 3 has only user 2 (no history)
    nb = Neighbors(np.array([[1, 2], [0, -1], [0, 1], [2, -1]], np.int32),
                   np.array([[.9, .1], [.9, 0], [.5, .25], [.7, 0]], np.float32))
    out = fold_in(vectors, has_history, nb)
    np.testing.assert_array_equal(out[:2], vectors[:2])  # users with history keep their vectors
    mean = (0.5 * vectors[0] + 0.25 * vectors[1]) / 0.75
    typical = np.linalg.norm(vectors[:2], axis=1).mean()  # 3.5
    np.testing.assert_allclose(out[2], mean / np.linalg.norm(mean) * typical, rtol=1e-6)
    np.testing.assert_array_equal(out[3], [0.0, 0.0])  # no neighbour with history: no vector
    assert out.dtype == np.float32 and vectors[2, 0] == 9.0  # a copy
    with pytest.raises(ValueError, match="disagree"):
        fold_in(vectors[:3], has_history, nb)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k must be"):
        top_k_neighbors(_user_song(), k=0)
    with pytest.raises(ValueError, match="block_size"):
        top_k_neighbors(_user_song(), k=1, block_size=0)
    with pytest.raises(ValueError, match="selection"):
        top_k_neighbors(_user_song(), k=1, selection="approximate")
    with pytest.raises(ValueError, match="both be"):
        knn_scores(np.zeros((2, 3), np.int32), np.zeros((2, 2)), sp.csr_matrix((5, 4)))
