"""Ranking metrics against hand-computed examples."""

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.metrics import full_ranking_metrics, sampled_metrics, sampled_ranks


def test_sampled_ranks_and_ties_are_pessimistic() -> None:
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],   # positive first -> rank 1
        [0.1, 0.2, 0.3, 0.4],   # positive last -> rank 4
        [0.5, 0.5, 0.5, 0.5],   # all tied -> worst rank 4
        [0.3, 0.4, 0.1, 0.2],   # one above -> rank 2
    ])
    assert sampled_ranks(scores).tolist() == [1, 4, 4, 2]
    m = sampled_metrics(scores, ks=(1, 2))
    assert m["mrr"] == pytest.approx((1 + 0.25 + 0.25 + 0.5) / 4)
    assert m["hit@1"] == 0.25 and m["hit@2"] == 0.5


def test_constant_model_is_not_perfect() -> None:
    assert sampled_metrics(np.zeros((10, 51)))["mrr"] == pytest.approx(1 / 51)


def test_full_ranking_recall_and_ndcg_by_hand() -> None:
    # 1 user, 6 playlists; scores rank 5 > 4 > 3 > 2 > 1 > 0; playlist 5 is excluded (train)
    scores = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    relevant = sp.csr_matrix(np.array([[0, 0, 1, 0, 1, 0]]))
    excluded = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1]]))
    m = full_ranking_metrics(lambda users: scores[users], np.array([0]), relevant, excluded, ks=(1, 3), ndcg_k=3)
    # ranking after exclusion: 4 (hit), 3, 2 (hit)
    assert m["recall@1"] == pytest.approx(1.0)      # 1 hit / min(1, 2)
    assert m["recall@3"] == pytest.approx(1.0)      # 2 hits / min(3, 2)
    ideal = 1 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / ideal)


def test_users_without_held_out_positives_are_skipped() -> None:
    relevant = sp.csr_matrix(np.array([[0, 1], [0, 0]]))
    m = full_ranking_metrics(lambda u: np.tile([[0.0, 1.0]], (len(u), 1)), np.array([0, 1]), relevant,
                             sp.csr_matrix((2, 2)), ks=(1,), ndcg_k=1)
    assert m["users"] == 1 and m["recall@1"] == 1.0
