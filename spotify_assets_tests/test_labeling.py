"""The fused blocked labeler equals a dense per-user reference for every block size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from spotify_assets.label.driver import seed_ownership, label_users
from spotify_assets.label.kernel import BlockLabeler, label_block
from spotify_assets.label.labels import merge_label_files, merge_labels
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.label.reference import dense_reference, ownership_candidates_reference
from spotify_assets.label.scores import exploration_coefficients, liked_counts, subsample_keys


def _random_binary(rng: np.random.Generator, rows: int, cols: int, density: float) -> sp.csr_matrix:
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


def _rows(indptr: np.ndarray, values: np.ndarray, user: int) -> np.ndarray:
    return values[indptr[user] : indptr[user + 1]]


def _assert_matches_reference(user_song, playlist_song, e, labels, k: int | None = None) -> None:
    ref = dense_reference(user_song, playlist_song, e)
    for user in range(user_song.shape[0]):
        assert _rows(labels.liked_indptr, labels.liked_playlists, user).tolist() == ref.liked[user], f"user {user}"
        # the kernel's scores are bit-identical to the formula on the same inputs
        np.testing.assert_array_equal(_rows(labels.liked_indptr, labels.liked_scores, user),
                                      ref.scores[user, ref.liked[user]])
        assert sorted(_rows(labels.hard_indptr, labels.hard_playlists, user).tolist()) == ref.hard[user], f"user {user}"
    np.testing.assert_array_equal(labels.n_scored, (~np.isnan(ref.scores)).sum(axis=1))
    np.testing.assert_array_equal(labels.hard_pool_sizes, [len(h) for h in ref.hard])
    if k is not None:
        users, priorities = ownership_candidates_reference(ref.scores, np.asarray(user_song.sum(axis=1)).ravel(), k)
        for j in range(playlist_song.shape[0]):
            held = labels.ownership.users[j]
            assert held[held >= 0].tolist() == users[j], f"playlist {j}"
            np.testing.assert_allclose(labels.ownership.priorities[j][held >= 0], priorities[j], rtol=1e-12)


@pytest.fixture(scope="module")
def medium():
    rng = np.random.default_rng(0)
    user_song = _random_binary(rng, 200, 60, 0.08)
    playlist_song = _random_binary(rng, 150, 60, 0.1)
    return user_song, playlist_song, exploration_coefficients(200, seed=3)


@pytest.mark.parametrize("block_size", [1, 7, 40, 33, 200, 1000])
def test_blocked_labeler_equals_dense_reference(medium, block_size: int) -> None:
    user_song, playlist_song, e = medium
    labels = label_users(user_song, playlist_song, e, block_size=block_size, ownership_k=5)
    _assert_matches_reference(user_song, playlist_song, e, labels, k=5)


def test_results_do_not_depend_on_block_size_or_sharding(medium) -> None:
    user_song, playlist_song, e = medium
    whole = label_users(user_song, playlist_song, e, block_size=200, ownership_k=4)
    shards = [label_users(user_song, playlist_song, e, block_size=9, ownership_k=4, start=a, stop=b)
              for a, b in [(0, 70), (70, 71), (71, 200)]]
    joined = merge_labels(shards)
    for name, array in whole.arrays(include_optional=True).items():
        np.testing.assert_array_equal(joined.arrays(include_optional=True)[name], array, err_msg=name)
    assert joined.scored_pairs == whole.scored_pairs
    # the ownership merge is order-free
    merged = OwnershipCandidates.from_arrays(shards[2].ownership.users, shards[2].ownership.priorities)
    merged.merge(shards[0].ownership).merge(shards[1].ownership)
    np.testing.assert_array_equal(merged.users, whole.ownership.users)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_merging_shard_files_equals_the_in_memory_merge_byte_for_byte(medium, tmp_path, chunk: int) -> None:
    """The pipeline's streaming merge writes exactly what np.savez of merge_labels writes,
    whatever the ownership chunk (every merge step is per playlist)."""
    user_song, playlist_song, e = medium
    shards = [label_users(user_song, playlist_song, e, block_size=9, ownership_k=4, start=a, stop=b,
                          max_hard_candidates=3, seed=5)
              for a, b in [(0, 70), (70, 71), (71, 200)]]
    paths = []
    for index, shard in enumerate(shards):
        paths.append(tmp_path / f"shard{index}.npz")
        np.savez(paths[-1], **shard.arrays(include_optional=True))
    expected = merge_labels(shards)
    np.savez(tmp_path / "expected.npz", **expected.arrays(include_optional=True))
    summary = merge_label_files(paths, tmp_path / "streamed.npz", chunk_playlists=chunk)
    assert (tmp_path / "streamed.npz").read_bytes() == (tmp_path / "expected.npz").read_bytes()
    n_liked = np.diff(expected.liked_indptr)
    assert summary == {"users": 200, "users_with_liked": int((n_liked > 0).sum()),
                       "liked_pairs": int(expected.liked_playlists.size),
                       "hard_pool_entries": int(expected.hard_playlists.size),
                       "n_scored_median": float(np.median(expected.n_scored)), "ownership_k": 4}
    with pytest.raises(ValueError, match="no label shards"):
        merge_label_files([], tmp_path / "none.npz")
    np.savez(tmp_path / "odd.npz", **shards[0].arrays())  # without the optional arrays
    with pytest.raises(ValueError, match="expected"):
        merge_label_files([paths[0], tmp_path / "odd.npz"], tmp_path / "bad.npz")


def test_ties_break_by_lower_playlist_id_single_scored_playlist_and_empty_users() -> None:
    # playlists 0..4 identical -> identical scores for every user that touches them
    playlist_song = sp.csr_matrix(np.tile([1, 1, 0, 0], (5, 1)).astype(np.float32))
    user_song = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    e = np.array([0.3, 0.5, 0.9, 0.1])
    labels = label_users(user_song, playlist_song, e, block_size=2, ownership_k=2)
    # user 0 scores 5 equal playlists: one liked, the lowest id; hard = ceil(0.2 * 4) = 1, the next id
    assert _rows(labels.liked_indptr, labels.liked_playlists, 0).tolist() == [0]
    assert _rows(labels.hard_indptr, labels.hard_playlists, 0).tolist() == [1]
    # user 1 shares no song and user 3 has no songs: nothing scored, nothing liked, no pool
    for user in (1, 3):
        assert labels.n_scored[user] == 0
        assert _rows(labels.liked_indptr, labels.liked_playlists, user).size == 0
        assert _rows(labels.hard_indptr, labels.hard_playlists, user).size == 0
    # ownership ties on equal priority go to the lower user id
    assert labels.ownership.users[:, 0].tolist() == [0] * 5
    # a user with exactly one scored playlist likes it and has no hard candidates
    one = label_users(sp.csr_matrix(np.array([[0, 0, 0, 1]], np.float32)),
                      sp.csr_matrix(np.array([[0, 0, 0, 1], [1, 0, 0, 0]], np.float32)), np.array([0.2]))
    assert one.liked_playlists.tolist() == [0] and one.hard_playlists.size == 0
    assert one.ownership.users[0, 0] == 0 and one.ownership.users[1, 0] == -1


def test_equal_exploration_coefficients_make_cross_user_ties(medium) -> None:
    user_song, playlist_song, _ = medium
    e = np.full(user_song.shape[0], 0.25)  # many exactly equal scores and priorities
    _assert_matches_reference(user_song, playlist_song, e, label_users(user_song, playlist_song, e, block_size=17,
                                                                      ownership_k=6), k=6)


def test_liked_count_formula() -> None:
    n = np.array([0, 1, 66, 67, 200, 201, 1000])
    np.testing.assert_array_equal(liked_counts(n), [0, 1, 1, 2, 3, 4, 15])


def test_exploration_coefficients_are_seeded_beta() -> None:
    e = exploration_coefficients(20000, seed=1)
    assert np.array_equal(e, exploration_coefficients(20000, seed=1))
    assert not np.array_equal(e, exploration_coefficients(20000, seed=2))
    # drawn in user order from one generator: a prefix does not depend on the user count
    np.testing.assert_array_equal(exploration_coefficients(100, seed=1), e[:100])
    assert abs(e.mean() - 1.3 / (1.3 + 3.3)) < 0.01 and e.min() > 0 and e.max() < 1


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="song dimensions"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 3)), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="binary"):
        label_users(sp.csr_matrix(np.array([[2.0, 0, 1]])), sp.csr_matrix((2, 3)), np.zeros(1))
    with pytest.raises(TypeError, match="sparse"):
        label_users(np.ones((2, 3)), sp.csr_matrix((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="block_size"):
        label_users(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 3)), np.zeros(2), block_size=0)


def test_duplicate_entries_are_rejected_and_explicit_zeros_ignored() -> None:
    duplicated = sp.csr_matrix((np.ones(2), np.array([1, 1]), np.array([0, 2])), shape=(1, 3))
    with pytest.raises(ValueError, match="binary"):
        label_users(duplicated, sp.csr_matrix(np.eye(3)), np.zeros(1))
    with_zero = sp.csr_matrix((np.array([1.0, 0.0]), np.array([0, 2]), np.array([0, 2])), shape=(1, 3))
    labels = label_users(with_zero, sp.csr_matrix(np.eye(3)), np.zeros(1))
    assert labels.n_scored.tolist() == [1] and labels.liked_playlists.tolist() == [0]


def test_capped_hard_candidates_are_a_seeded_subsample_independent_of_blocks(medium) -> None:
    user_song, playlist_song, e = medium
    exact = label_users(user_song, playlist_song, e, block_size=50)
    capped = {bs: label_users(user_song, playlist_song, e, block_size=bs, max_hard_candidates=3, seed=7)
              for bs in (1, 13, 200)}
    for labels in capped.values():
        np.testing.assert_array_equal(labels.hard_indptr, capped[200].hard_indptr)
        np.testing.assert_array_equal(labels.hard_playlists, capped[200].hard_playlists)
        np.testing.assert_array_equal(labels.liked_playlists, exact.liked_playlists)
    labels = capped[200]
    sizes = np.diff(labels.hard_indptr)
    np.testing.assert_array_equal(sizes, np.minimum(exact.hard_pool_sizes, 3))
    np.testing.assert_array_equal(labels.hard_pool_sizes, exact.hard_pool_sizes)
    for user in range(user_song.shape[0]):
        chosen = _rows(labels.hard_indptr, labels.hard_playlists, user)
        pool = _rows(exact.hard_indptr, exact.hard_playlists, user)
        assert set(chosen) <= set(pool)
        # the subset is the pool members with the smallest hash keys of (seed, user, playlist)
        keys = subsample_keys(7, np.full(pool.size, user), pool)
        assert set(chosen) == set(pool[np.argsort(keys)[:3]])
    other = label_users(user_song, playlist_song, e, block_size=50, max_hard_candidates=3, seed=8)
    assert not np.array_equal(other.hard_playlists, labels.hard_playlists)


def test_capped_subsample_is_roughly_uniform() -> None:
    users = np.zeros(100_000, dtype=np.int64)
    keys = subsample_keys(3, users, np.arange(100_000))
    top = np.argsort(keys)[:20_000]  # a 20% subsample of one user's pool
    counts = np.bincount(top // 10_000, minlength=10)  # 2000 expected per decile of ids
    assert counts.min() > 1800 and counts.max() < 2200


@pytest.mark.parametrize("k", [1, 3, 20])
def test_ownership_candidates_accumulate_exactly_in_any_order(k: int) -> None:
    rng = np.random.default_rng(k)
    n_playlists, n = 30, 4000
    playlists = rng.integers(0, n_playlists, n)
    users = rng.permutation(n)  # one pair per (user, playlist)
    priorities = np.round(rng.random(n), 2)  # many equal priorities: ties go to the lower user
    expected = OwnershipCandidates.empty(n_playlists, k)
    order = np.lexsort((users, -priorities, playlists))
    for j in range(n_playlists):
        mine = order[playlists[order] == j][:k]
        expected.users[j, : mine.size] = users[mine]
        expected.priorities[j, : mine.size] = priorities[mine]
    for batches in (1, 7, 400):
        acc = OwnershipCandidates.empty(n_playlists, k)
        perm = rng.permutation(n)
        for part in np.array_split(perm, batches):
            acc.add(playlists[part], users[part], priorities[part])
        np.testing.assert_array_equal(acc.users, expected.users)
        np.testing.assert_array_equal(acc.priorities, expected.priorities)
        assert np.all(acc.floor <= np.where(acc.full, acc.priorities[:, -1], -np.inf))
    rebuilt = OwnershipCandidates.from_arrays(**{name.split("_", 1)[1]: a for name, a in expected.arrays().items()})
    np.testing.assert_array_equal(rebuilt.users, expected.users)


@pytest.mark.parametrize("rounds", [1, 2])
def test_partial_seeding_then_main_pass_is_exact(medium, rounds) -> None:
    """Few seeding rounds leave unseeded users and open playlists; the main pass must still
    add exactly the pairs the rounds did not."""
    user_song, playlist_song, e = medium
    labeler = BlockLabeler(user_song, playlist_song, e)
    acc = OwnershipCandidates.empty(playlist_song.shape[0], 4)
    seeded = seed_ownership(labeler, np.arange(200), acc, block_size=16, factor=0.05, max_rounds=rounds)
    assert 0 < (seeded.seed_round >= 0).sum() < 200 and seeded.never_closed.any()
    for lo in range(0, 200, 23):
        acc.add(*labeler.block(lo, min(lo + 23, 200), acc.floor, seeded).ownership_pairs)
    ref = dense_reference(user_song, playlist_song, e)
    users, _ = ownership_candidates_reference(ref.scores, labeler.s, 4)
    for j in range(playlist_song.shape[0]):
        assert acc.users[j][acc.users[j] >= 0].tolist() == users[j]
    with pytest.raises(ValueError, match="empty"):
        seed_ownership(labeler, np.arange(200), acc, block_size=16)


def test_label_block_function_equals_label_users(medium) -> None:
    user_song, playlist_song, e = medium
    s = np.diff(user_song.indptr).astype(float)
    p = np.diff(playlist_song.indptr).astype(float)
    block = label_block(user_song, playlist_song.T.tocsr(), s, p, e, 40, 80)
    whole = label_users(user_song, playlist_song, e, ownership_k=None)
    lo, hi = whole.liked_indptr[40], whole.liked_indptr[80]
    np.testing.assert_array_equal(block.liked_playlists, whole.liked_playlists[lo:hi])
    np.testing.assert_array_equal(block.n_scored, whole.n_scored[40:80])


@pytest.mark.parametrize("equal_e", [False, True])
def test_seeding_rounds_do_not_change_ownership(medium, equal_e) -> None:
    user_song, playlist_song, e = medium
    if equal_e:  # equal weights for equal song counts: rounds must not split such ties
        e = np.full(e.size, 0.3)
    plain = label_users(user_song, playlist_song, e, ownership_k=3, ownership_seed_factor=0.0)
    for factor in (0.05, 0.5, 3.0):
        seeded = label_users(user_song, playlist_song, e, ownership_k=3, ownership_seed_factor=factor)
        np.testing.assert_array_equal(seeded.ownership.users, plain.ownership.users)
        np.testing.assert_array_equal(seeded.ownership.priorities, plain.ownership.priorities)


def test_block_labeler_reports_progress(medium) -> None:
    user_song, playlist_song, e = medium
    calls = []
    labels = label_users(user_song, playlist_song, e, block_size=64, progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [64, 128, 192, 200] and calls[-1][2] == labels.scored_pairs
    assert BlockLabeler(user_song, playlist_song, e).flops().sum() >= labels.scored_pairs


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 30), n_playlists=st.integers(1, 30), n_songs=st.integers(1, 12),
    density=st.floats(0.05, 0.6), block_size=st.integers(1, 35), k=st.integers(1, 6), seed=st.integers(0, 2**16),
    equal_e=st.booleans(), seed_factor=st.sampled_from([0.0, 0.1, 0.5, 1.5]),
)
def test_property_equal_to_reference(n_users, n_playlists, n_songs, density, block_size, k, seed, equal_e,
                                     seed_factor) -> None:
    rng = np.random.default_rng(seed)
    user_song = _random_binary(rng, n_users, n_songs, density)
    playlist_song = _random_binary(rng, n_playlists, n_songs, density)
    e = np.full(n_users, 0.5) if equal_e else exploration_coefficients(n_users, seed)
    labels = label_users(user_song, playlist_song, e, block_size=block_size, ownership_k=k,
                         ownership_seed_factor=seed_factor)
    _assert_matches_reference(user_song, playlist_song, e, labels, k=k)


@pytest.mark.parametrize("block_size", [1, 33, 500])
def test_torch_kernel_equals_scipy_kernel(block_size: int) -> None:
    """The GPU path (run here with torch on the CPU) selects exactly what the scipy path does."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    user_song = _random_binary(rng, 150, 50, 0.1)
    playlist_song = _random_binary(rng, 120, 50, 0.12)
    e = exploration_coefficients(150, seed=2)
    for cap in (None, 4):
        reference = label_users(user_song, playlist_song, e, block_size=block_size, device="scipy",
                                max_hard_candidates=cap, ownership_k=5)
        torch_labels = label_users(user_song, playlist_song, e, block_size=block_size, device="cpu",
                                   max_hard_candidates=cap, ownership_k=5)
        for name in ("n_scored", "liked_indptr", "liked_playlists", "hard_indptr", "hard_pool_sizes"):
            np.testing.assert_array_equal(getattr(torch_labels, name), getattr(reference, name), err_msg=name)
        np.testing.assert_allclose(torch_labels.liked_scores, reference.liked_scores, rtol=1e-12)
        for user in range(150):  # hard candidates: the same set (score order vs kernel order)
            assert set(_rows(torch_labels.hard_indptr, torch_labels.hard_playlists, user)) == set(
                _rows(reference.hard_indptr, reference.hard_playlists, user))
        np.testing.assert_array_equal(torch_labels.ownership.users, reference.ownership.users)
