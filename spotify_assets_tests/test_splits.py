"""Splits, ownership, triplets and eval batches: validity, determinism, agreement with references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.labeling import exploration_coefficients, label_users
from spotify_assets.splits import (
    TEST,
    TRAIN,
    VAL,
    assign_ownership,
    check_eval_batch_valid,
    check_no_split_overlap,
    check_triplets_valid,
    gini,
    ownership_reference,
    sample_eval_batch,
    sample_triplets,
    split_sizes,
    split_users,
)


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(5)
    user_song = sp.random(400, 80, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    playlist_song = sp.random(600, 80, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    user_song.data[:] = 1
    playlist_song.data[:] = 1
    # a generous liked share so that many users have >= 5 positives
    labels = label_users(user_song, playlist_song, exploration_coefficients(400, 1), block_size=64, liked_share=0.05)
    s = np.diff(user_song.indptr).astype(np.float64)
    return labels, s, playlist_song.shape[0]


def test_split_sizes_rule() -> None:
    train, val, test = split_sizes(np.array([0, 1, 4, 5, 10, 33]))
    assert train.tolist() == [0, 1, 4, 3, 7, 23]
    assert val.tolist() == [0, 0, 0, 1, 2, 7]
    assert test.tolist() == [0, 0, 0, 1, 1, 3]


def test_split_users(labelled) -> None:
    labels, _, _ = labelled
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.1)
    users = labels.liked_users()
    counts = np.diff(labels.liked_indptr)
    assert splits.cold.sum() == round(0.1 * (counts > 0).sum())
    # cold users: everything held out; light users: everything train
    assert (splits.split[splits.cold[users]] == TEST).all()
    light = (counts < 5) & ~splits.cold
    assert (splits.split[light[users]] == TRAIN).all()
    warm = (counts >= 5) & ~splits.cold
    per_user = np.zeros((labels.n_users, 3), dtype=int)
    np.add.at(per_user, (users, splits.split), 1)
    expected = np.stack(split_sizes(counts), axis=1)
    np.testing.assert_array_equal(per_user[warm], expected[warm])
    assert check_no_split_overlap(users, labels.liked_playlists, splits.split) == (True, 0)
    again = split_users(labels.liked_indptr, seed=0, cold_share=0.1)
    assert np.array_equal(again.split, splits.split) and np.array_equal(again.cold, splits.cold)
    assert not np.array_equal(split_users(labels.liked_indptr, seed=1, cold_share=0.1).split, splits.split)


@pytest.mark.parametrize("cap", [1, 3, 100])
def test_ownership_equals_sequential_greedy(labelled, cap) -> None:
    labels, s, n_playlists = labelled
    splits = split_users(labels.liked_indptr, seed=0)
    users = labels.liked_users()
    result = assign_ownership(users, labels.liked_playlists, labels.liked_scores, splits.split, s, n_playlists, cap=cap)
    reference = ownership_reference(users, labels.liked_playlists, labels.liked_scores, splits.split, s, n_playlists, cap=cap)
    np.testing.assert_array_equal(result.owner, reference)
    assert result.owned_counts.max() <= cap
    # an owner never owns one of their val/test positives
    held_out = {(u, j) for u, j, sp_ in zip(users, labels.liked_playlists, splits.split) if sp_ != TRAIN}
    assert not any((int(o), j) in held_out for j, o in enumerate(result.owner) if o >= 0)
    assert 0.0 <= gini(result.owned_counts) < 1.0


def test_gini_known_values() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)


def test_triplets_valid_and_deterministic(labelled) -> None:
    labels, s, n_playlists = labelled
    splits = split_users(labels.liked_indptr, seed=0)
    users = labels.liked_users()
    own = assign_ownership(users, labels.liked_playlists, labels.liked_scores, splits.split, s, n_playlists)
    args = (labels.liked_indptr, labels.liked_playlists, splits.split, labels.hard_indptr, labels.hard_playlists,
            own.owner, n_playlists)
    triplets, fallback = sample_triplets(*args, seed=3)
    assert triplets.dtype == np.int64 and triplets.shape == (4 * (splits.split == TRAIN).sum(), 3)
    assert check_triplets_valid(triplets, labels.liked_indptr, labels.liked_playlists, splits.split, own.owner, n_playlists) == (True, 0)
    again, _ = sample_triplets(*args, seed=3)
    assert np.array_equal(triplets, again)
    # two of four negatives per positive come from the hard pool (unless the pool is empty)
    hard_sets = {u: set(labels.hard_playlists[labels.hard_indptr[u]:labels.hard_indptr[u + 1]]) for u in range(labels.n_users)}
    first_two = triplets.reshape(-1, 4, 3)[:, :2, :].reshape(-1, 3)
    in_pool = np.array([n in hard_sets[u] for u, _, n in first_two])
    assert in_pool.sum() == first_two.shape[0] - fallback
    # a corrupted triplet is caught
    broken = triplets.copy()
    broken[0, 2] = broken[0, 1]
    assert not check_triplets_valid(broken, labels.liked_indptr, labels.liked_playlists, splits.split, own.owner, n_playlists)[0]


@pytest.mark.parametrize("which", [VAL, TEST])
def test_eval_batches_valid(labelled, which) -> None:
    labels, s, n_playlists = labelled
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.05)
    users = labels.liked_users()
    own = assign_ownership(users, labels.liked_playlists, labels.liked_scores, splits.split, s, n_playlists)
    batch = sample_eval_batch(labels.liked_indptr, labels.liked_playlists, splits.split, which, labels.hard_indptr,
                              labels.hard_playlists, own.owner, splits.cold, n_playlists, seed=2)
    assert batch.negatives.shape == ((splits.split == which).sum(), 50)
    assert check_eval_batch_valid(batch, labels.liked_indptr, labels.liked_playlists, splits.split, which, own.owner, n_playlists) == (True, 0)
    # half hard where the pool allows it
    pools = np.diff(labels.hard_indptr)[batch.users]
    for row in np.flatnonzero(pools >= 25)[:20]:
        u = batch.users[row]
        pool = set(labels.hard_playlists[labels.hard_indptr[u]:labels.hard_indptr[u + 1]])
        assert set(batch.negatives[row, :25]) <= pool
    again = sample_eval_batch(labels.liked_indptr, labels.liked_playlists, splits.split, which, labels.hard_indptr,
                              labels.hard_playlists, own.owner, splits.cold, n_playlists, seed=2)
    assert np.array_equal(again.negatives, batch.negatives)
    if which == TEST:
        assert batch.cold.any()
