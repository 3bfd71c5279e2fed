"""Baselines: popularity, random, the oracle and ALS (implicit) have the right shapes and order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.evaluate.tasks import evaluate_full, factor_scorer, popularity_scorer
from spotify_assets.label.driver import label_users
from spotify_assets.label.scores import exploration_coefficients, score_pairs
from spotify_assets.evaluate.metrics import full_ranking_metrics, sampled_metrics
from spotify_assets.train.baselines import (
    ALSTrial,
    Oracle,
    als_sweep,
    factor_candidate_scores,
    oracle_candidate_scores,
    oracle_scores,
    popularity_scores,
    random_scores,
    train_als,
)
from spotify_assets_tests.test_bpr import Planted, planted_clusters


@pytest.fixture(scope="module")
def data() -> Planted:
    return planted_clusters(seed=5)


def test_popularity_counts_train_likes() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0]], dtype=np.float32))
    scores = popularity_scores(train)
    assert scores.dtype == np.float32 and scores.tolist() == [1, 3, 1, 0]


def test_random_scores_are_seeded() -> None:
    a = random_scores(0, (4, 51))
    assert a.shape == (4, 51) and a.dtype == np.float32 and ((a >= 0) & (a < 1)).all()
    np.testing.assert_array_equal(a, random_scores(0, (4, 51)))
    assert not np.array_equal(a, random_scores(1, (4, 51)))


def test_popularity_beats_random_on_planted_data(data: Planted) -> None:
    popularity = popularity_scores(data.train)
    assert popularity.shape == (data.n_playlists,)
    # over every playlist, excluding the training interactions
    users, test = data.test.users, data.test.relevant
    full_pop = full_ranking_metrics(lambda u: np.tile(popularity, (u.size, 1)), users, test, data.test.excluded)
    full_rand = full_ranking_metrics(lambda u: random_scores(int(u[0]), (u.size, data.n_playlists)), users, test,
                                     data.test.excluded, block_size=50)
    assert full_pop["recall@10"] > full_rand["recall@10"] + 0.05, (full_pop, full_rand)
    # and on sampled candidates (the test positive against 50 random others)
    rng = np.random.default_rng(1)
    candidates = np.concatenate([test.indices[:, None], rng.integers(0, data.n_playlists, (users.size, 50))], axis=1)
    pop = sampled_metrics(popularity[candidates])
    rand = sampled_metrics(random_scores(0, candidates.shape))
    assert pop["mrr"] > rand["mrr"] + 0.05 and pop["hit@10"] > rand["hit@10"], (pop, rand)


def test_oracle_from_a_csr_ranks_by_score_then_id() -> None:
    # user 0: playlist 3 (0.9) > 1 (0.5) = 4 (0.5, higher id) > 0, 2 unscored
    true = sp.csr_matrix(np.array([[0, 0.5, 0, 0.9, 0.5], [0.1, 0, 0, 0, 0]]))
    scores = oracle_scores(true, np.array([0, 1]))
    assert scores.dtype == np.float32 and scores.shape == (2, 5)
    assert scores[0].tolist() == [0, 2, 0, 3, 1] and scores[1].tolist() == [1, 0, 0, 0, 0]
    candidates = np.array([[4, 1, 0, 3], [2, 0, 1, 3]])
    by_candidates = oracle_candidate_scores(true, np.array([0, 1]), candidates)
    # the same order as the full scores within each row (ties among unscored stay ties)
    np.testing.assert_array_equal(np.argsort(-by_candidates, axis=1, kind="stable"),
                                  np.argsort(-np.take_along_axis(scores, candidates, axis=1), axis=1, kind="stable"))
    assert by_candidates[1].tolist() == [0, 4, 0, 0]


def _binary(rng: np.random.Generator, rows: int, cols: int, density: float) -> sp.csr_matrix:
    return sp.csr_matrix((rng.random((rows, cols)) < density).astype(np.float32))


def test_matrix_oracle_matches_labels_exactly() -> None:
    rng = np.random.default_rng(2)
    user_song, playlist_song = _binary(rng, 120, 60, 0.1), _binary(rng, 90, 60, 0.1)
    e = exploration_coefficients(120, 0)
    oracle = Oracle(user_song, playlist_song, e)
    # true scores = the label score (docs/architecture.md#score) on every pair that shares a song
    m = (user_song @ playlist_song.T).toarray().astype(np.float64)
    s = np.asarray(user_song.sum(axis=1), dtype=np.float64).ravel()[:, None]
    p = np.asarray(playlist_song.sum(axis=1), dtype=np.float64).ravel()[None, :]
    reference = np.where(m > 0, score_pairs(m, e[:, None], s, p), 0.0)
    np.testing.assert_allclose(oracle.true_scores(np.arange(120)).toarray(), reference, rtol=1e-12)
    # ranking all playlists, the labelled likes fill the top positions: NDCG 1 at every cutoff
    labels = label_users(user_song, playlist_song, e)
    liked = sp.csr_matrix((np.ones(labels.liked_playlists.size, np.float32),
                           (labels.liked_users(), labels.liked_playlists)), shape=(120, 90))
    full = full_ranking_metrics(oracle.score_all, np.arange(120), liked, sp.csr_matrix((120, 90)), ks=(1,),
                                ndcg_k=(1, 5, 90), block_size=32)
    assert full["users"] > 50 and full["ndcg@1"] == full["ndcg@5"] == full["ndcg@90"] == 1.0
    # the sampled oracle orders candidates exactly as the full one
    users = np.repeat(np.arange(120), 2)
    candidates = rng.integers(0, 90, size=(240, 12))
    np.testing.assert_array_equal(
        np.argsort(-oracle.score_candidates(users, candidates), axis=1, kind="stable"),
        np.argsort(-np.take_along_axis(oracle.score_all(users), candidates, axis=1), axis=1, kind="stable"))
    np.testing.assert_array_equal(oracle.score_all(np.arange(5)), oracle_scores(oracle.true_scores(np.arange(120)),
                                                                                 np.arange(5)))


def test_als_shapes_and_sweep(data: Planted) -> None:
    als = train_als(data.train, factors=8, iterations=3, seed=0, num_threads=1)
    assert als.user_factors.shape == (data.n_users, 8) and als.item_factors.shape == (data.n_playlists, 8)
    assert als.score_users(np.arange(3)).shape == (3, data.n_playlists)
    candidates = np.tile(np.arange(20), (data.n_users, 1))
    scores = als.score_candidates(data.test.users, candidates)
    assert scores.shape == candidates.shape and scores.dtype == np.float32
    np.testing.assert_allclose(scores, factor_candidate_scores(als.user_factors, als.item_factors, data.test.users,
                                                               candidates, chunk_rows=7), rtol=1e-6)
    np.testing.assert_allclose(scores[:3], np.take_along_axis(als.score_users(np.arange(3)), candidates[:3], axis=1),
                               rtol=1e-5, atol=1e-6)
    # the same seed gives the same factors
    np.testing.assert_array_equal(train_als(data.train, factors=8, iterations=3, seed=0, num_threads=1).item_factors,
                                  als.item_factors)
    seen = []

    def validate(result):  # the sweep hands every fitted model to the validation metric, in grid order
        seen.append(result.factors)
        return evaluate_full(factor_scorer("als", result.user_factors, result.item_factors), data.val)["all"]

    trials = als_sweep(data.train, validate, factors=(8, 16), alphas=(1.0, 10.0), iterations=5, num_threads=1)
    assert [(t.factors, t.alpha) for t in trials] == [(8, 1.0), (8, 10.0), (16, 1.0), (16, 10.0)] and seen == [8, 8, 16, 16]
    assert all(isinstance(t, ALSTrial) and set(t.row()) >= {"factors", "alpha", "val_recall@10", "val_ndcg@10"}
               for t in trials)
    best = max(trials, key=lambda t: t.val_recall)
    popularity = evaluate_full(popularity_scorer(popularity_scores(data.train)), data.val)["all"]["recall@10"]
    assert best.val_recall > popularity + 0.1, [t.row() for t in trials]
