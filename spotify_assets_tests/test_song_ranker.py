"""The song-aware ranker on planted data: it beats popularity and KNN on full ranking, serves
users without interactions from their songs, its numpy scorer equals the torch network, and
training is reproducible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotify_assets.evaluate.tasks import RankingTask, evaluate_full, knn_scorer, popularity_scorer, ranking_tasks
from spotify_assets.label.driver import label_users
from spotify_assets.label.scores import exploration_coefficients
from spotify_assets.train.baselines import popularity_scores
from spotify_assets.train.knn import top_k_neighbors
from spotify_assets.train.negatives import InteractionSet
from spotify_assets.train.song_ranker import CandidateBatches, RankerNet, SongRankerConfig, train_song_ranker
from spotify_assets.train.song_scoring import FEATURES, NON_CANDIDATE, SongRanker, SongSignals
from spotify_assets.split.interactions import training_interactions
from spotify_assets.split.ownership import assign_ownership
from spotify_assets.split.users import split_users


@dataclass(frozen=True)
class PlantedSongs:
    signals: SongSignals
    val: RankingTask
    test: RankingTask
    interactions: sp.csr_matrix


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1
    return m


def planted_songs(seed: int = 0, n_users: int = 400, n_playlists: int = 600, n_songs: int = 900,
                  clusters: int = 6) -> PlantedSongs:
    """Songs, users and playlists in genre clusters (90% of a row's songs from its own cluster,
    Zipf-like within it); labels, splits, ownership and interactions from the pipeline's own
    functions, so the answers are what the label definition says."""
    rng = np.random.default_rng(seed)
    song_cluster = np.arange(n_songs) % clusters
    weight = 1.0 / (1.0 + np.arange(n_songs) // clusters) ** 0.8

    def rows_of(n: int, sizes: np.ndarray) -> sp.csr_matrix:
        cluster = rng.integers(0, clusters, n)
        r, c = [], []
        for i in range(n):  # test set-up, a few hundred rows
            own = np.flatnonzero(song_cluster == cluster[i])
            picks = rng.choice(own, size=int(sizes[i] * 0.9) + 1, p=weight[own] / weight[own].sum())
            noise = rng.integers(0, n_songs, int(sizes[i] * 0.1) + 1)
            songs = np.concatenate([picks, noise])
            r.append(np.full(songs.size, i)), c.append(songs)
        return _binary(np.concatenate(r), np.concatenate(c), (n, n_songs))

    user_song = rows_of(n_users, rng.integers(15, 80, n_users))
    playlist_song = rows_of(n_playlists, rng.integers(10, 60, n_playlists))
    labels = label_users(user_song, playlist_song, exploration_coefficients(n_users, seed))
    splits = split_users(labels.liked_indptr, seed=seed, cold_share=0.1, min_positives=3)
    owner = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split).owner
    interactions = training_interactions(labels.liked_indptr, labels.liked_playlists, splits.split, owner).matrix
    val, test = ranking_tasks(interactions, labels.liked_indptr, labels.liked_playlists, splits.split, splits.cold,
                              min_positives=3)
    signals = SongSignals.build(user_song, playlist_song, interactions, top_k_neighbors(user_song, k=30))
    return PlantedSongs(signals, val, test, interactions)


CONFIG = SongRankerConfig(hidden=16, user_dim=2, max_epochs=6, users_per_batch=64, seed=5)


@pytest.fixture(scope="module")
def planted() -> PlantedSongs:
    torch.set_num_threads(1)
    return planted_songs()


@pytest.fixture(scope="module")
def trained(planted: PlantedSongs):
    return train_song_ranker(planted.signals, CONFIG, planted.val, accelerator="cpu", val_block_users=100)


def test_ranker_beats_popularity_and_knn_on_full_ranking(planted: PlantedSongs, trained) -> None:
    ranker = SongRanker(planted.signals, trained.weights)
    ours = evaluate_full(ranker.score_all, planted.test)
    popularity = evaluate_full(popularity_scorer(popularity_scores(planted.interactions)), planted.test)
    knn = evaluate_full(knn_scorer(top_k_neighbors(planted.signals.user_song, k=30), planted.interactions),
                        planted.test)
    for segment in ("all", "warm", "cold"):
        assert ours[segment]["users"] > 5, segment
        assert ours[segment]["recall@10"] > 2 * popularity[segment]["recall@10"], (segment, ours, popularity)
        assert ours[segment]["recall@10"] > knn[segment]["recall@10"], (segment, ours, knn)
        assert ours[segment]["ndcg@10"] > knn[segment]["ndcg@10"], (segment, ours, knn)
    # the kept weights are the best validation epoch's, and the reported number is theirs
    assert evaluate_full(ranker.score_all, planted.val)["all"]["recall@10"] == pytest.approx(trained.best_val_recall)
    assert trained.best_val_recall == max(r.get("val_recall@10", -1) for r in trained.history)


def test_numpy_scorer_equals_the_torch_network(planted: PlantedSongs) -> None:
    net = RankerNet(planted.signals.n_users, len(FEATURES), 8, 3, seed=1)
    with torch.no_grad():
        net.users.weight.normal_(0, 0.5)  # non-zero user embeddings, so they are exercised too
        net.feature_mean.fill_(0.3)
        net.feature_std.fill_(2.0)
    users = np.arange(0, 50, dtype=np.int64)
    overlap, features = planted.signals.candidates(users)
    rows = np.repeat(np.arange(users.size), np.diff(overlap.indptr))
    with torch.no_grad():
        expected = net(torch.from_numpy(users[rows]), torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(SongRanker(planted.signals, net.export()).pair_scores(users[rows], features), expected,
                               rtol=1e-5, atol=1e-5)


def test_candidates_first_then_everything_else_by_popularity(planted: PlantedSongs, trained) -> None:
    ranker = SongRanker(planted.signals, trained.weights)
    users = np.arange(20, dtype=np.int64)
    scores = ranker.score_all(users)
    overlap = planted.signals.overlap(users).toarray() > 0
    assert scores.shape == (20, planted.signals.n_playlists) and scores.dtype == np.float64
    for u in range(20):
        if overlap[u].any() and (~overlap[u]).any():
            assert scores[u, overlap[u]].min() > scores[u, ~overlap[u]].max()
        rest = np.flatnonzero(~overlap[u])
        order = rest[np.argsort(-scores[u, rest], kind="stable")]
        popularity = planted.signals.playlist_interactions[order]
        assert np.all(np.diff(popularity) <= 0)  # popularity order among non-candidates
        assert scores[u, rest].max(initial=NON_CANDIDATE) < NON_CANDIDATE + 1


def test_candidate_batches_draw_candidate_negatives_and_mask_interactions(planted: PlantedSongs) -> None:
    interactions = InteractionSet.from_csr(planted.interactions)
    batches = list(CandidateBatches(planted.signals, interactions, CONFIG))
    again = list(CandidateBatches(planted.signals, interactions, CONFIG))
    assert all(all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(batches, again))  # seeded
    positives = sum(b[0].shape[0] for b in batches)
    with_history = np.flatnonzero(interactions.counts() > 0)
    users = np.concatenate([b[0].numpy() for b in batches])
    assert set(users.tolist()) <= set(with_history.tolist())
    # every interaction that shares a song with its user is a positive exactly once per epoch
    overlap = planted.signals.overlap(np.arange(planted.signals.n_users)).toarray() > 0
    dense = planted.interactions.toarray() > 0
    assert positives == int((dense & overlap).sum())
    for _, pos, neg, valid in batches:
        assert torch.all(pos[:, 0] > 0)  # log1p(shared songs) > 0: every positive is a candidate
        assert torch.all(neg[..., 0] > 0)  # and so is every negative
        assert valid.dtype == torch.bool and valid.float().mean() > 0.5


def test_training_is_reproducible(planted: PlantedSongs, trained) -> None:
    again = train_song_ranker(planted.signals, CONFIG, planted.val, accelerator="cpu", val_block_users=100)
    for name, value in trained.weights.items():
        np.testing.assert_array_equal(value, again.weights[name], err_msg=name)
    assert again.history == trained.history


def test_bad_input_rejected(planted: PlantedSongs) -> None:
    empty = SongSignals.build(planted.signals.user_song, planted.signals.song_playlist.T.tocsr(),
                              sp.csr_matrix(planted.interactions.shape, dtype=np.float32),
                              top_k_neighbors(planted.signals.user_song, k=5))
    with pytest.raises(ValueError, match="no user has a training interaction"):
        train_song_ranker(empty, CONFIG)
    with pytest.raises(ValueError, match="disagree on songs"):
        SongSignals.build(planted.signals.user_song[:, :10], planted.signals.song_playlist.T.tocsr(),
                          planted.interactions, top_k_neighbors(planted.signals.user_song, k=5))
    with pytest.raises(ValueError, match="must be >= 1"):
        SongRankerConfig(max_epochs=0)
