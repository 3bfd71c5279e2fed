"""BPR: the fused update equals autograd, it learns planted structure, its checkpoint
round-trips with weights_only=True and training is reproducible on CPU."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotify_assets.metrics import EvalBatch, sampled_metrics
from spotify_assets.models.baselines import popularity_scores
from spotify_assets.models.bpr import (
    BPRConfig,
    COMPILE_MIN_UPDATES,
    BPRNet,
    CompiledBPRStep,
    FusedBPRStep,
    ShuffledTripletBatches,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    score_candidates,
    score_users,
    train_bpr,
    use_compiled_update,
)


@dataclass(frozen=True)
class Planted:
    """Users like playlists of their own cluster, popular ones more often."""

    n_users: int
    n_playlists: int
    triplets: np.ndarray  # int64 (N, 3)
    train: sp.csr_matrix  # (n_users, n_playlists) train positives
    val: EvalBatch
    test: EvalBatch


def planted_clusters(seed: int = 0, n_users: int = 200, n_playlists: int = 300, clusters: int = 5,
                     liked: int = 12, negatives_per_positive: int = 4, n_neg: int = 50) -> Planted:
    """Each user likes ``liked`` playlists of their cluster (chosen with Zipf-like weights, so
    popularity carries some signal); the last two are the val and test positives. Negatives
    are playlists of other clusters."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, clusters, n_users)
    playlist_cluster = np.arange(n_playlists) % clusters
    weight = 1.0 / (1 + np.arange(n_playlists) // clusters)
    chosen = np.empty((n_users, liked), np.int64)
    for u in range(n_users):  # test data set-up, 200 users
        pool = np.flatnonzero(playlist_cluster == user_cluster[u])
        chosen[u] = rng.choice(pool, size=liked, replace=False, p=weight[pool] / weight[pool].sum())
    chosen = rng.permuted(chosen, axis=1)  # held-out positives as popular as the train ones

    def other_cluster(users: np.ndarray, width: int) -> np.ndarray:
        out = rng.integers(0, n_playlists, (users.size, width))
        clash = playlist_cluster[out] == user_cluster[users][:, None]
        while clash.any():
            out[clash] = rng.integers(0, n_playlists, int(clash.sum()))
            clash = playlist_cluster[out] == user_cluster[users][:, None]
        return out

    n_train = liked - 2
    users = np.arange(n_users)
    train_users = np.repeat(users, n_train)
    train_items = chosen[:, :n_train].ravel()
    triplet_users = np.repeat(train_users, negatives_per_positive)
    triplets = np.stack([triplet_users, np.repeat(train_items, negatives_per_positive),
                         other_cluster(triplet_users, 1)[:, 0]], axis=1)
    train = sp.csr_matrix((np.ones(train_users.size, np.float32), (train_users, train_items)),
                          shape=(n_users, n_playlists))
    val = EvalBatch(users, chosen[:, -2], other_cluster(users, n_neg))
    test = EvalBatch(users, chosen[:, -1], other_cluster(users, n_neg))
    return Planted(n_users, n_playlists, triplets, train, val, test)


CONFIG = BPRConfig(dim=16, lr=0.05, reg=1e-4, batch_size=256, max_epochs=12, seed=3, patience=3)


@pytest.fixture(scope="module")
def data() -> Planted:
    torch.set_num_threads(1)
    return planted_clusters()


@pytest.fixture(scope="module")
def trained(data: Planted, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("bpr") / "bpr.pt"
    return train_bpr(data.triplets, data.n_users, data.n_playlists, CONFIG, path, val_batch=data.val,
                     accelerator="cpu")


def test_fused_sgd_step_equals_autograd() -> None:
    """One fused step = W - lr * grad of the summed objective (repeated rows included)."""
    torch.manual_seed(0)
    net = BPRNet(6, 8, dim=4, seed=1)
    with torch.no_grad():
        net.bias.weight.normal_()
    batch = torch.tensor([[0, 1, 2], [0, 1, 3], [5, 2, 1], [4, 7, 7]])  # user 0 and playlist 1 repeated
    lr, reg = 0.1, 0.05
    params = [p.detach().clone().requires_grad_() for p in (net.users.weight, net.playlists.weight, net.bias.weight)]
    W, H, b = params
    u, i, j = batch.T
    x = (W[u] * (H[i] - H[j])).sum(1) + b[i, 0] - b[j, 0]
    objective = torch.nn.functional.softplus(-x).sum() + reg / 2 * (W[u].pow(2).sum() + H[i].pow(2).sum()
                                                                  + H[j].pow(2).sum())
    objective.backward()
    loss = FusedBPRStep()(net.users.weight, net.playlists.weight, net.bias.weight[:, 0], batch, lr, reg)
    assert float(loss) == pytest.approx(float(torch.nn.functional.softplus(-x.detach()).sum()), rel=1e-6)
    for param, reference in zip((net.users.weight, net.playlists.weight, net.bias.weight), params):
        torch.testing.assert_close(param.detach(), (reference - lr * reference.grad).detach(), rtol=1e-6, atol=1e-6)


def test_compiled_step_equals_the_eager_step() -> None:
    """torch.compile's fused update = the eager fused step (float rounding aside), repeated
    rows included; partial minibatches go to the eager step."""
    gen = torch.Generator().manual_seed(3)
    n_users, n_playlists, d, size = 50, 40, 16, 64
    batches = [torch.stack([torch.randint(0, n_users, (size,), generator=gen),
                            torch.randint(0, n_playlists, (size,), generator=gen),
                            torch.randint(0, n_playlists, (size,), generator=gen)], 1) for _ in range(5)]
    batches.append(batches[0][:10])  # an epoch's last, partial minibatch
    nets = [BPRNet(n_users, n_playlists, dim=d, seed=2) for _ in range(2)]
    eager, compiled = FusedBPRStep(), CompiledBPRStep(size)
    for batch in batches:
        losses = [step(net.users.weight, net.playlists.weight, net.bias.weight[:, 0], batch, 0.1, 0.01)
                  for step, net in zip((eager, compiled), nets)]
        assert float(losses[1]) == pytest.approx(float(losses[0]), rel=1e-5)
    assert compiled.failed is None and compiled.compile_seconds > 0
    initial = BPRNet(n_users, n_playlists, dim=d, seed=2).state_dict()
    compiled_state = nets[1].state_dict()
    for name, eager_value in nets[0].state_dict().items():
        torch.testing.assert_close(compiled_state[name], eager_value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(compiled_state[name], initial[name]), name  # the steps did move it


def test_compile_only_where_it_pays() -> None:
    big = COMPILE_MIN_UPDATES
    assert use_compiled_update(BPRConfig(max_epochs=10), big // 10, "cpu")
    assert not use_compiled_update(BPRConfig(max_epochs=10), big // 10 - 1, "cpu")
    assert use_compiled_update(BPRConfig(compile="on", max_epochs=1), 10, "cpu")
    assert not use_compiled_update(BPRConfig(compile="off", max_epochs=100), big, "cpu")
    assert not use_compiled_update(BPRConfig(compile="on"), big, "cuda")  # GPU: the eager step
    assert not use_compiled_update(BPRConfig(compile="on", optimizer="sparse_adam"), big, "cpu")
    with pytest.raises(ValueError, match="compile"):
        BPRConfig(compile="yes")


def test_compiled_training_is_reproducible_and_learns(data: Planted, tmp_path: Path) -> None:
    config = replace(CONFIG, compile="on")
    runs = [train_bpr(data.triplets, data.n_users, data.n_playlists, config, tmp_path / f"c{k}.pt",
                      val_batch=data.val, accelerator="cpu") for k in range(2)]
    assert all(r.compiled_update for r in runs)
    first, second = (load_checkpoint(r.checkpoint).state_dict() for r in runs)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert runs[0].best_val_mrr > 0.6, runs[0].history


def test_batches_are_seeded_permutations() -> None:
    triplets = torch.arange(30).reshape(10, 3)
    batches = ShuffledTripletBatches(triplets, batch_size=4, seed=0)
    first, second = torch.cat(list(batches)), torch.cat(list(batches))
    assert [b.shape[0] for b in batches] == [4, 4, 2] and len(batches) == 3
    for epoch in (first, second):  # every row exactly once per pass
        assert sorted(epoch[:, 0].tolist()) == triplets[:, 0].tolist()
    assert not torch.equal(first, second)  # a fresh permutation per epoch
    assert torch.equal(torch.cat(list(ShuffledTripletBatches(triplets, 4, seed=0))), first)  # seeded


def test_bpr_beats_popularity_on_planted_clusters(data: Planted, trained) -> None:
    candidates = data.test.candidates()
    popularity = sampled_metrics(popularity_scores(data.train)[candidates])["mrr"]
    ckpt = read_checkpoint(trained.checkpoint)
    bpr = sampled_metrics(score_candidates(ckpt.net, data.test.users, candidates))["mrr"]
    assert bpr > 0.8 and bpr > popularity + 0.4, (bpr, popularity)
    # the checkpoint holds the best epoch, and the reported val MRR is reproducible from it
    assert ckpt.epoch == trained.best_epoch and ckpt.val_mrr == trained.best_val_mrr
    val = sampled_metrics(score_candidates(ckpt.net, data.val.users, data.val.candidates()))["mrr"]
    assert val == pytest.approx(trained.best_val_mrr, abs=1e-6)
    assert max(row.get("val_mrr", -1) for row in trained.history) == pytest.approx(trained.best_val_mrr)
    assert 1 <= trained.epochs_run <= CONFIG.max_epochs and trained.triplets_per_second > 0
    assert trained.device == "cpu"


def test_checkpoint_round_trips_with_weights_only(trained, tmp_path: Path) -> None:
    payload = torch.load(trained.checkpoint, weights_only=True)
    assert set(payload) == {"format", "state_dict", "hparams", "epoch", "val_mrr"}
    assert payload["hparams"]["dim"] == CONFIG.dim and payload["hparams"]["n_users"] == 200
    net = load_checkpoint(trained.checkpoint)
    copy = tmp_path / "sub" / "copy.pt"
    save_checkpoint(copy, net, payload["hparams"], epoch=payload["epoch"], val_mrr=payload["val_mrr"])
    assert [p.name for p in copy.parent.iterdir()] == ["copy.pt"]  # no temp file left behind
    again = load_checkpoint(copy)
    users = np.arange(200)
    np.testing.assert_array_equal(score_users(net, users), score_users(again, users))
    # the accessors agree with the scores
    expected = net.user_embeddings() @ net.playlist_embeddings().T + net.playlist_bias()
    np.testing.assert_allclose(score_users(net, users), expected, rtol=1e-5, atol=1e-6)
    cands = np.tile(np.arange(10), (200, 1))
    np.testing.assert_allclose(score_candidates(net, users, cands), expected[:, :10], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not a"):
        torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
        read_checkpoint(tmp_path / "foreign.pt")


def test_training_is_reproducible_on_cpu(data: Planted, trained, tmp_path: Path) -> None:
    again = train_bpr(data.triplets, data.n_users, data.n_playlists, CONFIG, tmp_path / "again.pt",
                      val_batch=data.val, accelerator="cpu")
    first = load_checkpoint(trained.checkpoint).state_dict()
    second = load_checkpoint(again.checkpoint).state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert again.history == trained.history
    # int32 triplets (kept as int32 in memory) train exactly like int64 ones
    narrow = train_bpr(data.triplets.astype(np.int32), data.n_users, data.n_playlists, CONFIG, tmp_path / "i32.pt",
                       val_batch=data.val, accelerator="cpu")
    assert torch.equal(load_checkpoint(narrow.checkpoint).users.weight, second["users.weight"])
    other = train_bpr(data.triplets, data.n_users, data.n_playlists, replace(CONFIG, seed=4, max_epochs=1),
                      tmp_path / "other.pt", val_batch=data.val, accelerator="cpu")
    assert not torch.equal(load_checkpoint(other.checkpoint).users.weight, second["users.weight"])


@pytest.mark.parametrize("optimizer", ["sparse_adam", "adam"])
def test_autograd_optimizers_also_learn(data: Planted, optimizer: str, tmp_path: Path) -> None:
    config = replace(CONFIG, optimizer=optimizer, lr=0.05, max_epochs=5)
    result = train_bpr(data.triplets, data.n_users, data.n_playlists, config, tmp_path / "m.pt", val_batch=data.val,
                       accelerator="cpu")
    assert result.best_val_mrr > 0.6, result.history


def test_without_val_rows_trains_all_epochs_and_keeps_the_last(data: Planted, tmp_path: Path) -> None:
    empty = EvalBatch(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 50), np.int64))
    result = train_bpr(data.triplets, data.n_users, data.n_playlists, replace(CONFIG, max_epochs=2),
                       tmp_path / "m.pt", val_batch=empty, accelerator="cpu")
    assert result.epochs_run == 2 and np.isnan(result.best_val_mrr) and result.best_epoch == -1
    ckpt = read_checkpoint(result.checkpoint)
    assert ckpt.epoch == 1 and np.isnan(ckpt.val_mrr)
    assert [row["epoch"] for row in result.history] == [0, 1]


def test_bad_input_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        train_bpr(np.array([[0, 5, 1]]), 1, 3, CONFIG, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="integers"):
        train_bpr(np.array([[0.0, 1.0, 2.0]]), 1, 3, CONFIG, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        train_bpr(np.array([0, 1, 2]), 1, 3, CONFIG, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="optimizer"):
        BPRConfig(optimizer="adagrad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="playlist ids"):
        train_bpr(np.array([[0, 1, 2]]), 1, 3, CONFIG, tmp_path / "x.pt",
                  val_batch=(np.array([0]), np.array([1]), np.array([[7]])))
    assert not (tmp_path / "x.pt").exists()
