"""Splits, ownership, triplets and eval batches: validity, determinism, agreement with references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.label.driver import label_users
from spotify_assets.label.reference import dense_reference
from spotify_assets.label.scores import exploration_coefficients
from spotify_assets.split.checks import (
    check_eval_batches_valid,
    check_liked_counts,
    check_no_split_overlap,
    check_ownership_valid,
    check_triplets_valid,
)
from spotify_assets.split.ownership import assign_ownership, ownership_gini, ownership_reference
from spotify_assets.split.reference import eval_batches_reference, triplets_reference
from spotify_assets.split.sampling import EvalBatch, sample_eval_batches, sample_triplets, usable_hard_pools
from spotify_assets.split.users import TEST, TRAIN, VAL, split_sizes, split_users

N_USERS, N_PLAYLISTS = 400, 600


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(5)
    user_song = sp.random(N_USERS, 80, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    playlist_song = sp.random(N_PLAYLISTS, 80, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    user_song.data[:] = 1
    playlist_song.data[:] = 1
    e = exploration_coefficients(N_USERS, 1)
    # a generous liked share so that many users have >= 5 positives; k = all users -> exact lists
    labels = label_users(user_song, playlist_song, e, block_size=64, liked_share=0.05, ownership_k=N_USERS)
    return labels, user_song, playlist_song, e


@pytest.fixture(scope="module")
def prepared(labelled):
    labels = labelled[0]
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.05)
    own = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split, cap=3)
    return labels, splits, own


def test_split_sizes_rule() -> None:
    train, val, test = split_sizes(np.array([0, 1, 4, 5, 10, 15, 25, 33]))
    assert train.tolist() == [0, 1, 4, 3, 7, 10, 17, 23]
    assert val.tolist() == [0, 0, 0, 1, 2, 3, 5, 7]
    assert test.tolist() == [0, 0, 0, 1, 1, 2, 3, 3]  # 2.5 rounds half up to 3
    # shares that would leave no train positive give one back from val
    train, val, test = split_sizes(np.array([5]), fractions=(0.1, 0.5, 0.4))
    assert (train.tolist(), val.tolist(), test.tolist()) == ([1], [2], [2])
    with pytest.raises(ValueError):
        split_sizes(np.array([5]), fractions=(0.5, 0.5, 0.5))


def test_split_users(labelled) -> None:
    labels = labelled[0]
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.1)
    users = labels.liked_users()
    counts = np.diff(labels.liked_indptr)
    assert splits.cold.sum() == int(np.floor(0.1 * (counts > 0).sum() + 0.5))
    # cold users: everything held out (test); light users: everything train
    assert (splits.split[splits.cold[users]] == TEST).all()
    light = (counts < 5) & ~splits.cold
    assert (splits.split[light[users]] == TRAIN).all()
    warm = (counts >= 5) & ~splits.cold
    per_user = np.zeros((labels.n_users, 3), dtype=int)
    np.add.at(per_user, (users, splits.split), 1)
    np.testing.assert_array_equal(per_user[warm], np.stack(split_sizes(counts), axis=1)[warm])
    assert tuple(check_no_split_overlap(users, labels.liked_playlists, splits.split)) == (True, 0)
    again = split_users(labels.liked_indptr, seed=0, cold_share=0.1)
    assert np.array_equal(again.split, splits.split) and np.array_equal(again.cold, splits.cold)
    other = split_users(labels.liked_indptr, seed=1, cold_share=0.1)
    assert not np.array_equal(other.split, splits.split)
    assert sum(splits.counts().values()) == labels.liked_playlists.size


def test_no_split_overlap_catches_a_duplicated_pair() -> None:
    verdict = check_no_split_overlap(np.array([0, 0, 1]), np.array([4, 4, 4]), np.array([TRAIN, VAL, TEST]))
    assert not verdict.passed and verdict.details["duplicated_pairs"] == 1


def test_liked_counts_check(labelled) -> None:
    labels = labelled[0]
    assert check_liked_counts(labels.n_scored, labels.liked_indptr, liked_share=0.05).passed
    broken = labels.liked_indptr.copy()
    broken[1:] += 1  # user 0 gets one more
    verdict = check_liked_counts(labels.n_scored, broken, liked_share=0.05)
    assert not verdict.passed and verdict.details["wrong_users"] == [0]


@pytest.mark.parametrize("cap", [1, 3, 100])
def test_ownership_equals_sequential_greedy(labelled, cap) -> None:
    labels, user_song, playlist_song, e = labelled
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.05)
    result = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split, cap=cap)
    playlists, users, priorities = labels.ownership.pairs()
    reference = ownership_reference(users, playlists, priorities, labels.liked_indptr, labels.liked_playlists,
                                    splits.split, N_PLAYLISTS, cap=cap)
    np.testing.assert_array_equal(result.owner, reference)
    # k = all users: the candidate lists are complete, so this is the greedy over all scored pairs
    ref = dense_reference(user_song, playlist_song, e, liked_share=0.05)
    u_all, j_all = np.nonzero(~np.isnan(ref.scores))
    s = np.asarray(user_song.sum(axis=1)).ravel()
    all_pairs = ownership_reference(u_all, j_all, ref.scores[u_all, j_all] / np.sqrt(s[u_all]), labels.liked_indptr,
                                    labels.liked_playlists, splits.split, N_PLAYLISTS, cap=cap)
    np.testing.assert_array_equal(result.owner, all_pairs)
    assert result.exhausted == 0 and result.owned_counts.max() <= cap
    verdict = check_ownership_valid(result.owner, labels.liked_indptr, labels.liked_playlists, splits.split, cap,
                                    labels.ownership)
    assert verdict.passed, verdict.details
    assert verdict.details["unowned_playlists"] == result.unowned
    assert 0.0 <= result.gini < 1.0


def test_cold_users_own_nothing_and_the_greedy_still_equals_the_reference(labelled) -> None:
    """A cold user must reach the models with no training interaction at all: ownership skips
    cold users (the next candidate gets the playlist), the sequential reference agrees, and the
    validator flags a cold owner."""
    labels, _, _, _ = labelled
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.2)
    unrestricted = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split, cap=3)
    assert splits.cold[unrestricted.owner[unrestricted.owner >= 0]].any()  # without the rule cold users own some
    result = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split, cap=3,
                              cold=splits.cold)
    owned = result.owner[result.owner >= 0]
    assert owned.size > 0 and not splits.cold[owned].any()
    playlists, users, priorities = labels.ownership.pairs()
    np.testing.assert_array_equal(result.owner, ownership_reference(
        users, playlists, priorities, labels.liked_indptr, labels.liked_playlists, splits.split, N_PLAYLISTS, cap=3,
        cold=splits.cold))
    args = (labels.liked_indptr, labels.liked_playlists, splits.split, 3, labels.ownership)
    assert check_ownership_valid(result.owner, *args, cold=splits.cold).passed
    verdict = check_ownership_valid(unrestricted.owner, *args, cold=splits.cold)
    assert not verdict.passed and verdict.details["playlists_owned_by_cold_users"] > 0
    with pytest.raises(ValueError, match="cold must be bool"):
        assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split,
                         cold=splits.cold.astype(np.int8))


def test_ownership_with_short_candidate_lists_reports_exhaustion(labelled) -> None:
    labels, user_song, playlist_song, e = labelled
    short = label_users(user_song, playlist_song, e, block_size=64, liked_share=0.05, ownership_k=2)
    splits = split_users(short.liked_indptr, seed=0, cold_share=0.3)
    result = assign_ownership(short.ownership, short.liked_indptr, short.liked_playlists, splits.split, cap=1)
    playlists, users, priorities = short.ownership.pairs()
    np.testing.assert_array_equal(result.owner, ownership_reference(
        users, playlists, priorities, short.liked_indptr, short.liked_playlists, splits.split, N_PLAYLISTS, cap=1))
    assert result.exhausted == int(((result.owner < 0) & short.ownership.full).sum()) > 0


def test_ownership_never_takes_a_held_out_positive_and_the_check_catches_it(prepared) -> None:
    labels, splits, own = prepared
    held = {(u, j) for u, j, code in zip(labels.liked_users().tolist(), labels.liked_playlists.tolist(),
                                         splits.split.tolist()) if code != TRAIN}
    assert held and not any((int(o), j) in held for j, o in enumerate(own.owner) if o >= 0)
    u, j = next(iter(held))
    broken = own.owner.copy()
    broken[j] = u
    verdict = check_ownership_valid(broken, labels.liked_indptr, labels.liked_playlists, splits.split, cap=3)
    assert not verdict.passed and verdict.details["owned_held_out_positives"] >= 1


def test_ownership_needs_the_labelers_candidates(prepared) -> None:
    labels, splits, _ = prepared
    with pytest.raises(TypeError, match="OwnershipCandidates"):
        assign_ownership(labels.liked_users(), labels.liked_playlists, labels.liked_scores, splits.split)


def test_gini_known_values() -> None:
    assert ownership_gini(np.array([1, 1, 1, 1])) == 0.0
    assert ownership_gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert ownership_gini(np.zeros(3)) == 0.0


def test_triplets_valid_deterministic_and_hard_from_usable_pool(prepared) -> None:
    labels, splits, own = prepared
    args = (labels.liked_indptr, labels.liked_playlists, splits.split, labels.hard_indptr, labels.hard_playlists,
            own.owner, N_PLAYLISTS)
    triplets, fallback = sample_triplets(*args, seed=3)
    n_train = int((splits.split == TRAIN).sum())
    assert triplets.dtype == np.int64 and triplets.shape == (4 * n_train, 3)
    verdict = check_triplets_valid(triplets, labels.liked_indptr, labels.liked_playlists, splits.split, own.owner,
                                   N_PLAYLISTS)
    assert verdict.passed, verdict.details
    assert np.array_equal(triplets, sample_triplets(*args, seed=3).triplets)
    assert not np.array_equal(triplets, sample_triplets(*args, seed=4).triplets)
    # the first two of every four negatives come from the user's hard pool minus owned playlists
    pool_indptr, pool = usable_hard_pools(labels.hard_indptr, labels.hard_playlists, own.owner)
    pools = {u: set(pool[pool_indptr[u]:pool_indptr[u + 1]].tolist()) for u in range(N_USERS)}
    hard_rows = triplets.reshape(-1, 4, 3)[:, :2, :].reshape(-1, 3)
    in_pool = np.array([n in pools[u] for u, _, n in hard_rows.tolist()])
    empty_pool = np.array([not pools[u] for u in hard_rows[:, 0].tolist()])
    assert in_pool.sum() == hard_rows.shape[0] - fallback and fallback == int(empty_pool.sum())
    # a corrupted triplet is caught
    broken = triplets.copy()
    broken[0, 2] = broken[0, 1]
    verdict = check_triplets_valid(broken, labels.liked_indptr, labels.liked_playlists, splits.split, own.owner,
                                   N_PLAYLISTS)
    assert not verdict.passed and verdict.details["negative_liked"] == 1


def test_triplets_agree_with_the_per_user_reference(prepared) -> None:
    labels, splits, own = prepared
    args = (labels.liked_indptr, labels.liked_playlists, splits.split, labels.hard_indptr, labels.hard_playlists,
            own.owner, N_PLAYLISTS)
    fast = sample_triplets(*args, seed=1)
    slow = triplets_reference(*args, seed=1)
    assert check_triplets_valid(slow.triplets, *args[:3], own.owner, N_PLAYLISTS).passed
    assert fast.triplets.shape == slow.triplets.shape and fast.n_fallback == slow.n_fallback
    np.testing.assert_array_equal(fast.triplets[:, :2], slow.triplets[:, :2])  # same (user, positive) rows
    # same distribution: the hard negatives of both follow the expected per-playlist counts
    # (each hard slot of user u puts 1/|pool(u)| on every playlist of its usable pool)
    pool_indptr, pool = usable_hard_pools(labels.hard_indptr, labels.hard_playlists, own.owner)
    expected = np.zeros(N_PLAYLISTS)
    slots = np.bincount(fast.triplets[::4, 0], minlength=N_USERS) * 2
    for u in range(N_USERS):
        mine = pool[pool_indptr[u]:pool_indptr[u + 1]]
        if mine.size:
            np.add.at(expected, mine, slots[u] / mine.size)
    seen = expected > 5
    for sample in (fast, slow):
        observed = np.bincount(sample.triplets.reshape(-1, 4, 3)[:, :2, 2].ravel(), minlength=N_PLAYLISTS)
        chi2_per_bin = (((observed - expected)[seen] ** 2) / expected[seen]).mean()
        assert chi2_per_bin < 1.5  # ~1 for a correct uniform draw; a biased sampler gives far more


def test_users_without_hard_candidates_fall_back_to_easy() -> None:
    liked_indptr = np.array([0, 1, 2])
    liked_playlists = np.array([0, 1])
    split = np.array([TRAIN, TRAIN])
    hard_indptr = np.array([0, 0, 1])  # user 0: no pool; user 1: pool {2}, which user 1 owns
    hard_playlists = np.array([2])
    owner = np.array([-1, -1, 1, -1, -1])
    triplets, fallback = sample_triplets(liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, 5,
                                         seed=0)
    assert fallback == 4
    assert check_triplets_valid(triplets, liked_indptr, liked_playlists, split, owner, 5).passed
    assert not np.isin(triplets[triplets[:, 0] == 1, 2], [1, 2]).any()


@pytest.mark.parametrize("which", [VAL, TEST])
def test_eval_batches_valid(prepared, which) -> None:
    labels, splits, own = prepared
    args = (labels.liked_indptr, labels.liked_playlists, splits.split, which, labels.hard_indptr,
            labels.hard_playlists, own.owner, splits.cold, N_PLAYLISTS)
    batch = sample_eval_batches(*args, seed=2)
    assert batch.negatives.shape == ((splits.split == which).sum(), 50) and batch.negatives.dtype == np.int64
    verdict = check_eval_batches_valid(batch, labels.liked_indptr, labels.liked_playlists, splits.split, which,
                                       own.owner, N_PLAYLISTS)
    assert verdict.passed, verdict.details
    # the first 25 are hard where the usable pool allows it, all of the pool otherwise
    pool_indptr, pool = usable_hard_pools(labels.hard_indptr, labels.hard_playlists, own.owner)
    sizes = np.diff(pool_indptr)[batch.users]
    for row in range(batch.users.size):
        user = batch.users[row]
        mine = set(pool[pool_indptr[user]:pool_indptr[user + 1]].tolist())
        n_hard = min(25, sizes[row])
        assert set(batch.negatives[row, :n_hard].tolist()) <= mine
    assert batch.n_hard_short == int(np.maximum(0, 25 - sizes).sum())
    again = sample_eval_batches(*args, seed=2)
    assert np.array_equal(again.negatives, batch.negatives)
    assert (batch.cold == splits.cold[batch.users]).all()
    if which == TEST:
        assert batch.cold.any()
    slow = eval_batches_reference(*args, seed=2)
    assert check_eval_batches_valid(slow, labels.liked_indptr, labels.liked_playlists, splits.split, which, own.owner,
                                    N_PLAYLISTS).passed
    np.testing.assert_array_equal(slow.users, batch.users)
    np.testing.assert_array_equal(slow.positives, batch.positives)


def test_eval_batch_check_catches_bad_rows(prepared) -> None:
    labels, splits, own = prepared
    batch = sample_eval_batches(labels.liked_indptr, labels.liked_playlists, splits.split, VAL, labels.hard_indptr,
                                labels.hard_playlists, own.owner, splits.cold, N_PLAYLISTS, seed=2)
    negatives = batch.negatives.copy()
    negatives[0, 1] = negatives[0, 0]  # a duplicate
    negatives[1, 0] = batch.positives[1]  # the positive itself
    broken = EvalBatch(batch.users, batch.positives, negatives, batch.cold)
    verdict = check_eval_batches_valid(broken, labels.liked_indptr, labels.liked_playlists, splits.split, VAL,
                                       own.owner, N_PLAYLISTS)
    assert not verdict.passed and verdict.failures == 2


def _edge_case_inputs(seed: int):
    """Tiny random liked/hard/owner arrays with every edge case of the samplers: users with
    no hard pool, users owning most of their hard pool or many playlists, hard pools smaller
    than the hard negatives a row needs, and users owning a train positive."""
    rng = np.random.default_rng(seed)
    n_users, n_playlists = 30, 120
    liked_indptr, liked, split, hard_indptr, hard = [0], [], [], [0], []
    for u in range(n_users):
        mine = rng.choice(n_playlists, size=int(rng.integers(1, 12)), replace=False)
        liked += mine.tolist()
        split += rng.integers(0, 3, mine.size).tolist()
        liked_indptr.append(len(liked))
        rest = np.setdiff1d(np.arange(n_playlists), mine)
        pool = rng.choice(rest, size=[0, 1, 3, 20, 60][u % 5], replace=False)
        hard += pool.tolist()
        hard_indptr.append(len(hard))
    owner = rng.integers(-1, n_users, n_playlists)
    owner[:40] = 0  # user 0 owns many playlists (its hard pool may be entirely owned)
    owner[hard[hard_indptr[3]:hard_indptr[4]]] = 3  # user 3 owns its whole pool
    split = np.array(split, dtype=np.int8)
    held = {(u, j) for u in range(n_users) for j, c in zip(liked[liked_indptr[u]:liked_indptr[u + 1]],
                                                             split[liked_indptr[u]:liked_indptr[u + 1]]) if c}
    for j in range(n_playlists):  # keep ownership valid: never a held-out positive of the owner
        if (int(owner[j]), j) in held:
            owner[j] = -1
    return (np.array(liked_indptr), np.array(liked, dtype=np.int32), split, np.array(hard_indptr),
            np.array(hard, dtype=np.int32), owner, n_playlists)


@pytest.mark.parametrize("seed", range(4))
def test_samplers_on_edge_cases_match_the_references(seed) -> None:
    liked_indptr, liked, split, hard_indptr, hard, owner, n_playlists = _edge_case_inputs(seed)
    args = (liked_indptr, liked, split, hard_indptr, hard, owner, n_playlists)
    fast, slow = sample_triplets(*args, seed=seed), triplets_reference(*args, seed=seed)
    assert check_triplets_valid(fast.triplets, liked_indptr, liked, split, owner, n_playlists).passed
    assert fast.n_fallback == slow.n_fallback and np.array_equal(fast.triplets[:, :2], slow.triplets[:, :2])
    assert np.array_equal(fast.triplets, sample_triplets(*args, seed=seed).triplets)
    pool_indptr, pool = usable_hard_pools(hard_indptr, hard, owner)
    hard_rows = fast.triplets.reshape(-1, 4, 3)[:, :2].reshape(-1, 3)
    for u, _, neg in hard_rows.tolist():
        mine = pool[pool_indptr[u]:pool_indptr[u + 1]]
        assert neg in mine or mine.size == 0
    cold = np.zeros(liked_indptr.size - 1, dtype=bool)
    for which in (VAL, TEST):
        eargs = (liked_indptr, liked, split, which, hard_indptr, hard, owner, cold, n_playlists)
        batch, ref = sample_eval_batches(*eargs, seed=seed), eval_batches_reference(*eargs, seed=seed)
        assert check_eval_batches_valid(batch, liked_indptr, liked, split, which, owner, n_playlists).passed
        np.testing.assert_array_equal(batch.users, ref.users)
        sizes = np.diff(pool_indptr)[batch.users]
        assert batch.n_hard_short == int(np.maximum(0, 25 - sizes).sum())
        for row, user in enumerate(batch.users.tolist()):  # the first min(25, |pool|) are the pool's
            n_hard = min(25, int(sizes[row]))
            mine = set(pool[pool_indptr[user]:pool_indptr[user + 1]].tolist())
            assert set(batch.negatives[row, :n_hard].tolist()) <= mine
            if sizes[row] <= 25:
                assert set(batch.negatives[row, :n_hard].tolist()) == mine


def test_eval_hard_negatives_are_uniform_without_replacement() -> None:
    """A pool of 30 (25 wanted, so the listed/iid paths both matter) and one of 60: every
    pool member is picked equally often (chi-square per bin near 1)."""
    n_playlists, rows = 200, 4000  # rows // 20 seeded batches of two rows
    liked_indptr = np.array([0, 1, 2])
    liked = np.array([100, 101], dtype=np.int32)
    split = np.array([VAL, VAL], dtype=np.int8)
    hard_indptr = np.array([0, 30, 90])
    hard = np.concatenate([np.arange(30), np.arange(30, 90)]).astype(np.int32)
    owner = np.full(n_playlists, -1)
    counts = np.zeros((2, n_playlists))
    for seed in range(rows // 20):
        batch = sample_eval_batches(liked_indptr, liked, split, VAL, hard_indptr, hard, owner,
                                    np.zeros(2, bool), n_playlists, seed=seed)
        for row in range(2):
            assert len(set(batch.negatives[row].tolist())) == 50
            np.add.at(counts[row], batch.negatives[row, :25], 1)
    for row, size in ((0, 30), (1, 60)):
        observed = counts[row][counts[row] > 0]
        assert observed.size == size
        expected = (rows // 20) * 25 / size
        assert (((observed - expected) ** 2) / expected).mean() < 2.0
