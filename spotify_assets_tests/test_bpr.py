"""BPR learns planted structure, round-trips its checkpoint and is reproducible on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spotify_assets.metrics import sampled_metrics
from spotify_assets.models.bpr import BPRConfig, load_checkpoint, score_all, train_bpr


def planted(seed: int = 0, n_users: int = 200, n_playlists: int = 300, clusters: int = 5):
    """Users like playlists of their own cluster; popular playlists are spread evenly."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, clusters, n_users)
    playlist_cluster = np.arange(n_playlists) % clusters
    liked = [rng.choice(np.flatnonzero(playlist_cluster == c), size=12, replace=False) for c in user_cluster]
    train, held = [], []
    for u, items in enumerate(liked):
        for i in items[:10]:
            for _ in range(2):
                neg = rng.integers(0, n_playlists)
                while playlist_cluster[neg] == user_cluster[u]:
                    neg = rng.integers(0, n_playlists)
                train.append((u, i, neg))
        held += [(u, i) for i in items[10:]]
    held = np.array(held)
    negatives = np.stack([
        rng.choice(np.flatnonzero(playlist_cluster != user_cluster[u]), size=50, replace=False) for u, _ in held
    ])
    return np.array(train, dtype=np.int64), (held[:, 0], held[:, 1], negatives), n_users, n_playlists


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    triplets, val, n_users, n_playlists = planted()
    config = BPRConfig(dim=16, lr=0.1, reg=1e-4, batch_size=512, max_epochs=15, seed=3, patience=5)
    path = tmp_path_factory.mktemp("bpr") / "bpr.pt"
    return train_bpr(triplets, n_users, n_playlists, config, path, val_batch=val, accelerator="cpu"), val, config, triplets


def test_bpr_beats_popularity_on_planted_clusters(trained) -> None:
    result, (users, positives, negatives), _, triplets = trained
    candidates = np.concatenate([positives[:, None], negatives], axis=1)
    popularity = np.bincount(triplets[:, 1], minlength=300).astype(float)
    pop_mrr = sampled_metrics(popularity[candidates])["mrr"]
    net = load_checkpoint(Path(result.checkpoint))
    scores = np.take_along_axis(score_all(net, users), candidates, axis=1)
    bpr_mrr = sampled_metrics(scores)["mrr"]
    assert bpr_mrr > 0.5 and bpr_mrr > pop_mrr + 0.2, (bpr_mrr, pop_mrr)
    assert result.best_val_mrr == pytest.approx(bpr_mrr, abs=1e-5)
    assert result.triplets_per_second > 0 and result.epochs_run >= 1


def test_checkpoint_round_trips_with_weights_only(trained) -> None:
    result = trained[0]
    payload = torch.load(result.checkpoint, weights_only=True)
    assert set(payload) == {"state_dict", "hparams"}
    a = score_all(load_checkpoint(Path(result.checkpoint)), np.arange(5))
    b = score_all(load_checkpoint(Path(result.checkpoint)), np.arange(5))
    np.testing.assert_array_equal(a, b)


def test_training_is_reproducible_on_cpu(trained, tmp_path) -> None:
    result, val, config, triplets = trained
    again = train_bpr(triplets, 200, 300, config, tmp_path / "again.pt", val_batch=val, accelerator="cpu")
    first = load_checkpoint(Path(result.checkpoint)).state_dict()
    second = load_checkpoint(tmp_path / "again.pt").state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_sparse_adam_also_learns(tmp_path) -> None:
    triplets, val, n_users, n_playlists = planted(seed=1)
    config = BPRConfig(dim=16, lr=0.05, batch_size=512, max_epochs=8, optimizer="sparse_adam", seed=1)
    result = train_bpr(triplets, n_users, n_playlists, config, tmp_path / "adam.pt", val_batch=val, accelerator="cpu")
    assert result.best_val_mrr > 0.4


def test_bad_triplets_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        train_bpr(np.array([[0, 5, 1]]), 1, 3, BPRConfig(), tmp_path / "x.pt")
