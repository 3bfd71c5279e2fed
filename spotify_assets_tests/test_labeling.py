"""The fused blocked labeler equals a dense per-user reference for every block size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from spotify_assets.labeling import (
    dense_reference,
    exploration_coefficients,
    label_users,
    liked_counts,
)


def _random_binary(rng: np.random.Generator, rows: int, cols: int, density: float) -> sp.csr_matrix:
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


def _assert_matches_reference(user_song, playlist_song, e, labels) -> None:
    liked, hard, scores = dense_reference(user_song, playlist_song, e)
    for user in range(user_song.shape[0]):
        lo, hi = labels.liked_indptr[user], labels.liked_indptr[user + 1]
        assert labels.liked_playlists[lo:hi].tolist() == liked[user], f"user {user}"
        np.testing.assert_allclose(labels.liked_scores[lo:hi], scores[user, liked[user]], rtol=1e-12)
        hlo, hhi = labels.hard_indptr[user], labels.hard_indptr[user + 1]
        assert labels.hard_playlists[hlo:hhi].tolist() == hard[user], f"user {user} hard pool"
    np.testing.assert_array_equal(labels.n_scored, (~np.isnan(scores)).sum(axis=1))


@pytest.mark.parametrize("block_size", [1, 7, 40, 200, 1000])
def test_blocked_labeler_equals_dense_reference(block_size: int) -> None:
    rng = np.random.default_rng(0)
    user_song = _random_binary(rng, 200, 60, 0.08)
    playlist_song = _random_binary(rng, 150, 60, 0.1)
    e = exploration_coefficients(200, seed=3)
    labels = label_users(user_song, playlist_song, e, block_size=block_size)
    _assert_matches_reference(user_song, playlist_song, e, labels)


def test_ties_break_by_lower_playlist_id_and_single_scored_playlist() -> None:
    # playlists 0..4 identical -> identical scores for every user
    playlist_song = sp.csr_matrix(np.tile([1, 1, 0, 0], (5, 1)).astype(np.float32))
    user_song = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=np.float32))
    e = np.array([0.3, 0.5, 0.9])
    labels = label_users(user_song, playlist_song, e, block_size=2)
    # user 0 scores 5 equal playlists: one liked, the lowest id
    assert labels.liked_playlists[labels.liked_indptr[0]:labels.liked_indptr[1]].tolist() == [0]
    assert labels.hard_playlists[labels.hard_indptr[0]:labels.hard_indptr[1]].tolist() == [1]
    # user 1 shares no song: nothing scored, nothing liked
    assert labels.n_scored[1] == 0 and labels.liked_indptr[2] - labels.liked_indptr[1] == 0
    # a user with exactly one scored playlist likes it
    one = label_users(sp.csr_matrix(np.array([[0, 0, 0, 1]], np.float32)),
                      sp.csr_matrix(np.array([[0, 0, 0, 1], [1, 0, 0, 0]], np.float32)), np.array([0.2]))
    assert one.liked_playlists.tolist() == [0] and one.hard_playlists.size == 0


def test_liked_count_formula() -> None:
    n = np.array([0, 1, 66, 67, 200, 201, 1000])
    np.testing.assert_array_equal(liked_counts(n), [0, 1, 1, 2, 3, 4, 15])


def test_exploration_coefficients_are_seeded_beta() -> None:
    e = exploration_coefficients(20000, seed=1)
    assert np.array_equal(e, exploration_coefficients(20000, seed=1))
    assert abs(e.mean() - 1.3 / (1.3 + 3.3)) < 0.01 and e.min() > 0 and e.max() < 1


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="song dimensions"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 3)), np.zeros(3))


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 30), n_playlists=st.integers(1, 30), n_songs=st.integers(1, 12),
    density=st.floats(0.05, 0.6), block_size=st.integers(1, 35), seed=st.integers(0, 2**16),
)
def test_property_equal_to_reference(n_users, n_playlists, n_songs, density, block_size, seed) -> None:
    rng = np.random.default_rng(seed)
    user_song = _random_binary(rng, n_users, n_songs, density)
    playlist_song = _random_binary(rng, n_playlists, n_songs, density)
    e = exploration_coefficients(n_users, seed)
    _assert_matches_reference(user_song, playlist_song, e, label_users(user_song, playlist_song, e, block_size=block_size))


@pytest.mark.parametrize("block_size", [1, 33, 500])
def test_torch_kernel_equals_scipy_kernel(block_size: int) -> None:
    """The GPU path (run here with torch on the CPU) selects exactly what the scipy path does."""
    rng = np.random.default_rng(11)
    user_song = _random_binary(rng, 150, 50, 0.1)
    playlist_song = _random_binary(rng, 120, 50, 0.12)
    e = exploration_coefficients(150, seed=2)
    reference = label_users(user_song, playlist_song, e, block_size=block_size, device="scipy")
    torch_labels = label_users(user_song, playlist_song, e, block_size=block_size, device="cpu")
    for name, array in reference.arrays().items():
        if name == "liked_scores":
            np.testing.assert_allclose(torch_labels.liked_scores, array, rtol=1e-12)
        else:
            np.testing.assert_array_equal(getattr(torch_labels, name), array, err_msg=name)
