"""Ranking metrics against hand-computed examples and a brute-force full ranking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.evaluate.metrics import (
    EvalBatch,
    full_ranking_metrics,
    metrics_from_tie_counts,
    sampled_metrics,
    sampled_ranks,
    sampled_tie_counts,
)

# --------------------------------------------------------------------------------------
# sampled
# --------------------------------------------------------------------------------------

ROWS = np.array([
    [0.9, 0.1, 0.2, 0.3],  # positive first -> rank 1
    [0.1, 0.2, 0.3, 0.4],  # positive last -> rank 4
    [0.5, 0.5, 0.5, 0.5],  # all tied
    [0.3, 0.4, 0.3, 0.2],  # one ahead, one tied
])


def test_pessimistic_ties_by_hand() -> None:
    assert sampled_ranks(ROWS).tolist() == [1, 4, 4, 3]
    m = sampled_metrics(ROWS, ks=(1, 2, 3))
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 4 + 1 / 3) / 4)
    assert m["hit@1"] == 0.25 and m["hit@2"] == 0.25 and m["hit@3"] == 0.5


def test_expected_ties_by_hand() -> None:
    m = sampled_metrics(ROWS, ks=(1, 2, 3), ties="expected")
    all_tied = (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4  # uniform over ranks 1..4
    one_tied = (1 / 2 + 1 / 3) / 2  # uniform over ranks 2..3
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + all_tied + one_tied) / 4)
    assert m["hit@1"] == pytest.approx((1 + 0 + 1 / 4 + 0) / 4)
    assert m["hit@2"] == pytest.approx((1 + 0 + 2 / 4 + 1 / 2) / 4)
    assert m["hit@3"] == pytest.approx((1 + 0 + 3 / 4 + 1) / 4)


def test_constant_model_is_never_perfect() -> None:
    constant = np.zeros((10, 51))
    assert sampled_metrics(constant)["mrr"] == pytest.approx(1 / 51)
    assert sampled_metrics(constant)["hit@10"] == 0.0
    # expected ties: the mean reciprocal rank of a uniformly random rank in 1..51
    assert sampled_metrics(constant, ties="expected")["mrr"] == pytest.approx(np.mean(1 / np.arange(1, 52)))
    assert sampled_metrics(constant, ties="expected")["hit@10"] == pytest.approx(10 / 51)


def test_cutoff_beyond_the_candidates_counts_every_row() -> None:
    assert sampled_metrics(ROWS, ks=(100,))["hit@100"] == 1.0


def test_nan_is_never_rewarded() -> None:
    scores = np.array([[np.nan, 0.1, 0.2], [0.5, np.nan, 0.1], [0.5, 0.4, 0.1]])
    assert sampled_ranks(scores).tolist() == [3, 2, 1]
    assert sampled_metrics(scores, ties="expected")["mrr"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)


def test_counts_of_chunks_combine_exactly() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(300, 51)).astype(np.float32)  # many ties
    parts = [sampled_tie_counts(chunk) for chunk in np.array_split(scores, 7)]
    greater = np.concatenate([g for g, _ in parts])
    tied = np.concatenate([t for _, t in parts])
    for ties in ("pessimistic", "expected"):
        assert metrics_from_tie_counts(greater, tied, ties=ties) == pytest.approx(sampled_metrics(scores, ties=ties))


def test_empty_batch_gives_nan_and_bad_input_raises() -> None:
    assert np.isnan(sampled_metrics(np.zeros((0, 51)))["mrr"])
    with pytest.raises(ValueError, match="scores must be"):
        sampled_metrics(np.zeros(5))
    with pytest.raises(ValueError, match="ties must be"):
        sampled_metrics(ROWS, ties="optimistic")  # type: ignore[arg-type]


def test_eval_batch_candidates_and_validation() -> None:
    batch = EvalBatch(np.array([0, 1]), np.array([5, 6]), np.array([[1, 2], [3, 4]]))
    assert batch.rows == 2
    np.testing.assert_array_equal(batch.candidates(), [[5, 1, 2], [6, 3, 4]])
    assert batch.validate(n_users=2, n_playlists=7).candidates().dtype == np.int64
    with pytest.raises(ValueError, match="playlist ids"):
        batch.validate(n_users=2, n_playlists=6)
    with pytest.raises(ValueError, match="user ids"):
        batch.validate(n_users=1, n_playlists=7)


# --------------------------------------------------------------------------------------
# full ranking
# --------------------------------------------------------------------------------------


def _csr(dense) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(dense, dtype=np.float32))


def _full(scores, relevant, excluded, **kwargs) -> dict[str, float]:
    scores = np.asarray(scores, dtype=np.float64)
    return full_ranking_metrics(lambda users: scores[users], np.arange(scores.shape[0]), _csr(relevant),
                                _csr(excluded), **kwargs)


def test_full_ranking_by_hand() -> None:
    # scores rank 5 > 4 > 3 > 2 > 1 > 0; playlist 5 is excluded (train positive)
    m = _full([[0, 1, 2, 3, 4, 5]], [[0, 0, 1, 0, 1, 0]], [[0, 0, 0, 0, 0, 1]], ks=(1, 3), ndcg_k=(1, 3))
    # ranking after exclusion: 4 (hit), 3, 2 (hit)
    assert m["recall@1"] == pytest.approx(1.0)  # 1 hit / min(1, 2)
    assert m["recall@3"] == pytest.approx(1.0)  # 2 hits / min(3, 2)
    assert m["ndcg@1"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert m["users"] == 1


def test_full_ranking_relevant_last_and_cutoff_beyond_candidates() -> None:
    # relevant playlist 0 ranks last of the 3 rankable ones (playlist 3 is excluded)
    m = _full([[0.0, 2.0, 1.0, 9.0]], [[1, 0, 0, 0]], [[0, 0, 0, 1]], ks=(2, 50), ndcg_k=(2, 50))
    assert m["recall@2"] == 0.0 and m["ndcg@2"] == 0.0
    assert m["recall@50"] == 1.0
    assert m["ndcg@50"] == pytest.approx(1 / np.log2(4))


def test_full_ranking_ties_pessimistic_and_expected() -> None:
    # a constant model: 4 rankable playlists, playlist 1 relevant
    scores, relevant, excluded = [[1.0, 1.0, 1.0, 1.0, 1.0]], [[0, 1, 0, 0, 0]], [[0, 0, 0, 0, 1]]
    pessimistic = _full(scores, relevant, excluded, ks=(1, 3, 4), ndcg_k=(4,))
    assert pessimistic["recall@1"] == 0 and pessimistic["recall@3"] == 0 and pessimistic["recall@4"] == 1
    assert pessimistic["ndcg@4"] == pytest.approx(1 / np.log2(5))
    expected = _full(scores, relevant, excluded, ks=(1, 3, 4), ndcg_k=(4,), ties="expected")
    assert expected["recall@1"] == pytest.approx(1 / 4) and expected["recall@3"] == pytest.approx(3 / 4)
    assert expected["ndcg@4"] == pytest.approx(np.mean(1 / np.log2(np.arange(2, 6))))
    # two relevant tied with one non-relevant for the first place, pessimistic: positions 2 and 3
    m = _full([[3.0, 3.0, 3.0, 1.0]], [[1, 0, 1, 0]], [[0, 0, 0, 0]], ks=(1, 2), ndcg_k=(3,))
    assert m["recall@1"] == 0 and m["recall@2"] == pytest.approx(1 / 2)
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))


def test_full_ranking_skips_users_without_positives_and_rejects_leaks() -> None:
    m = full_ranking_metrics(lambda u: np.tile([[0.0, 1.0]], (len(u), 1)), np.array([0, 1]),
                             _csr([[0, 1], [0, 0]]), sp.csr_matrix((2, 2)), ks=(1,), ndcg_k=1)
    assert m["users"] == 1 and m["recall@1"] == 1.0
    with pytest.raises(ValueError, match="also excluded"):
        _full([[0.0, 1.0]], [[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="score_block returned"):
        full_ranking_metrics(lambda u: np.zeros((len(u), 3)), np.array([0]), _csr([[1, 0]]), _csr([[0, 0]]))


def _brute_force_pessimistic(scores, relevant, excluded, ks, ndcg_ks) -> dict[str, float]:
    """One user at a time: sort rankable playlists by (score desc, non-relevant first)."""
    sums = {f"recall@{k}": 0.0 for k in ks} | {f"ndcg@{k}": 0.0 for k in ndcg_ks}
    users = 0
    for u in range(scores.shape[0]):
        rel = set(np.flatnonzero(relevant[u]))
        if not rel:
            continue
        users += 1
        rankable = [j for j in range(scores.shape[1]) if not excluded[u, j]]
        ranked = sorted(rankable, key=lambda j: (-scores[u, j], j in rel))
        hit_positions = [pos for pos, j in enumerate(ranked, start=1) if j in rel]
        for k in ks:
            sums[f"recall@{k}"] += sum(p <= k for p in hit_positions) / min(k, len(rel))
        for k in ndcg_ks:
            dcg = sum(1 / np.log2(p + 1) for p in hit_positions if p <= k)
            ideal = sum(1 / np.log2(p + 1) for p in range(1, min(k, len(rel)) + 1))
            sums[f"ndcg@{k}"] += dcg / ideal
    return {name: value / users for name, value in sums.items()}


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_full_ranking_equals_brute_force_with_many_ties(block_size: int) -> None:
    rng = np.random.default_rng(block_size)
    n_users, n_playlists = 40, 30
    scores = rng.integers(0, 5, size=(n_users, n_playlists)).astype(np.float32)  # heavy ties
    scores[3] = 0.0  # a constant user
    scores[4, :] = np.nan  # a diverged row: NaN ranks last
    relevant = rng.random((n_users, n_playlists)) < 0.1
    excluded = (rng.random((n_users, n_playlists)) < 0.3) & ~relevant
    relevant[5] = False  # a user without held-out positives is skipped
    ks, ndcg_ks = (1, 5, 10, 100), (5, 10)
    fast = full_ranking_metrics(lambda users: scores[users], np.arange(n_users), _csr(relevant), _csr(excluded),
                                ks=ks, ndcg_k=ndcg_ks, block_size=block_size)
    slow = _brute_force_pessimistic(np.nan_to_num(scores, nan=-np.inf), relevant, excluded, ks, ndcg_ks)
    assert fast["users"] == int(relevant.any(axis=1).sum())
    for name, value in slow.items():
        assert fast[name] == pytest.approx(value), name
