"""BPR: the fused update equals autograd, per-epoch negatives come from the training
interactions only, it learns planted structure (full ranking), its checkpoint round-trips
with weights_only=True and training is reproducible on CPU."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotify_assets.evaluate.tasks import RankingTask, evaluate_full, factor_scorer, popularity_scorer
from spotify_assets.train.baselines import popularity_scores
from spotify_assets.train.bpr import (
    BPRConfig,
    BPRModule,
    BPRNet,
    EpochTriplets,
    FusedBPRStep,
    NativeBPRStep,
    ShuffledTripletBatches,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    score_candidates,
    score_users,
    train_bpr,
    use_native_update,
)
from spotify_assets.train import native
from spotify_assets.train.negatives import InteractionSet


@dataclass(frozen=True)
class Planted:
    """Users like playlists of their own cluster, popular ones more often."""

    n_users: int
    n_playlists: int
    train: sp.csr_matrix  # (n_users, n_playlists) training interactions
    val: RankingTask
    test: RankingTask


def _task(name: str, users: np.ndarray, playlists: np.ndarray, excluded: sp.csr_matrix) -> RankingTask:
    relevant = sp.csr_matrix((np.ones(users.size, np.float32), (users, playlists)), shape=excluded.shape)
    return RankingTask(name, users, relevant, excluded, {"all": np.ones(users.size, bool)})


def planted_clusters(seed: int = 0, n_users: int = 200, n_playlists: int = 300, clusters: int = 5,
                     liked: int = 12) -> Planted:
    """Each user likes ``liked`` playlists of their cluster (chosen with Zipf-like weights, so
    popularity carries some signal); the last two are the val and test positives."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, clusters, n_users)
    playlist_cluster = np.arange(n_playlists) % clusters
    weight = 1.0 / (1 + np.arange(n_playlists) // clusters)
    chosen = np.empty((n_users, liked), np.int64)
    for u in range(n_users):  # test data set-up, 200 users
        pool = np.flatnonzero(playlist_cluster == user_cluster[u])
        chosen[u] = rng.choice(pool, size=liked, replace=False, p=weight[pool] / weight[pool].sum())
    chosen = rng.permuted(chosen, axis=1)  # held-out positives as popular as the train ones
    n_train = liked - 2
    users = np.arange(n_users)
    train = sp.csr_matrix((np.ones(users.size * n_train, np.float32), (np.repeat(users, n_train),
                                                                       chosen[:, :n_train].ravel())),
                          shape=(n_users, n_playlists))
    val = _task("val", users, chosen[:, -2], train)
    test_excluded = (train + val.relevant).tocsr()
    return Planted(n_users, n_playlists, train, val, _task("test", users, chosen[:, -1], test_excluded))


CONFIG = BPRConfig(dim=16, lr=0.05, reg=1e-4, batch_size=256, max_epochs=12, seed=3, patience=3,
                   negatives="uniform", negatives_per_positive=4)


@pytest.fixture(scope="module")
def data() -> Planted:
    torch.set_num_threads(1)
    return planted_clusters()


@pytest.fixture(scope="module")
def trained(data: Planted, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("bpr") / "bpr.pt"
    return train_bpr(data.train, CONFIG, path, validation=data.val, accelerator="cpu")


def _recall(net: BPRNet, task: RankingTask) -> float:
    return evaluate_full(factor_scorer("bpr", net.user_embeddings(), net.playlist_embeddings(), net.playlist_bias()),
                         task)["all"]["recall@10"]


def _native_step(batch_size: int = 2048) -> NativeBPRStep:
    kernel = native.load_bpr_kernel()
    if kernel is None:
        pytest.skip(f"the C kernel does not build here: {native.build_error()}")
    return NativeBPRStep(kernel, batch_size)


@pytest.mark.parametrize("kind", ["torch", "native"])
def test_fused_sgd_step_equals_autograd(kind: str) -> None:
    """One fused step (torch ops or the C kernel) = W - lr * grad of the summed objective,
    computed by autograd (repeated rows included)."""
    torch.manual_seed(0)
    net = BPRNet(6, 8, dim=20, seed=1)  # 20 = one 16-lane block of the C dot product + a tail
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
    step = FusedBPRStep() if kind == "torch" else _native_step()
    loss = step(net.users.weight, net.playlists.weight, net.bias.weight[:, 0], batch, lr, reg)
    assert float(loss) == pytest.approx(float(torch.nn.functional.softplus(-x.detach()).sum()), rel=1e-6)
    for param, reference in zip((net.users.weight, net.playlists.weight, net.bias.weight), params):
        torch.testing.assert_close(param.detach(), (reference - lr * reference.grad).detach(), rtol=1e-6, atol=1e-6)


def test_native_step_equals_the_torch_step() -> None:
    """The C kernel's minibatches = the torch fused step on each slice in turn (float rounding
    aside): repeated rows, a partial last minibatch, int32 ids and rows wider than a triplet
    (the hard-mining candidates, ignored) included."""
    gen = torch.Generator().manual_seed(3)
    n_users, n_playlists, d, size = 50, 40, 37, 64
    rows = torch.stack([torch.randint(0, n_users, (5 * size + 10,), generator=gen)]
                       + [torch.randint(0, n_playlists, (5 * size + 10,), generator=gen) for _ in range(4)], 1)
    nets = [BPRNet(n_users, n_playlists, dim=d, seed=2) for _ in range(3)]
    with torch.no_grad():
        for net in nets:
            net.bias.weight.copy_(torch.randn(n_playlists, 1, generator=torch.Generator().manual_seed(5)))
    initial = {k: v.clone() for k, v in nets[0].state_dict().items()}
    eager, fast = FusedBPRStep(), _native_step(size)

    def params(net: BPRNet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return net.users.weight.data, net.playlists.weight.data, net.bias.weight.data[:, 0]

    eager_loss = sum(float(eager(*params(nets[0]), rows[s : s + size, :3], 0.1, 0.01))
                     for s in range(0, rows.shape[0], size))
    fast_loss = fast.minibatches(*params(nets[1]), rows, 0.1, 0.01)  # (n, 5): columns 3-4 ignored
    narrow_loss = fast.minibatches(*params(nets[2]), rows[:, :3].to(torch.int32), 0.1, 0.01)
    assert fast_loss == pytest.approx(eager_loss, rel=1e-5) and narrow_loss == fast_loss
    for name, eager_value in nets[0].state_dict().items():
        torch.testing.assert_close(nets[1].state_dict()[name], eager_value, rtol=1e-5, atol=1e-6)
        assert torch.equal(nets[2].state_dict()[name], nets[1].state_dict()[name]), name
        assert not torch.equal(nets[1].state_dict()[name], initial[name]), name  # the steps did move it


def test_native_step_rejects_ids_out_of_range() -> None:
    net = BPRNet(4, 5, dim=8, seed=0)
    before = net.users.weight.detach().clone()
    step = _native_step()
    for bad in ([[0, 1, 5]], [[4, 1, 2]], [[0, -1, 2]]):
        with pytest.raises(IndexError, match="out of range"):
            step(net.users.weight.data, net.playlists.weight.data, net.bias.weight.data[:, 0], torch.tensor(bad),
                 0.1, 0.0)
    assert torch.equal(net.users.weight, before)  # nothing written


def test_native_update_where_asked() -> None:
    assert use_native_update(BPRConfig(), "cpu") and use_native_update(BPRConfig(compile="on"), "cpu")
    assert not use_native_update(BPRConfig(compile="off"), "cpu")
    assert not use_native_update(BPRConfig(compile="on"), "cuda")  # GPU: the torch step
    assert not use_native_update(BPRConfig(compile="on", optimizer="sparse_adam"), "cpu")
    with pytest.raises(ValueError, match="compile"):
        BPRConfig(compile="yes")


def test_native_training_learns_like_the_torch_step(data: Planted, trained, tmp_path: Path) -> None:
    """``trained`` (compile="auto") ran in the C kernel (test_training_is_reproducible_on_cpu
    repeats it bit for bit); the torch step (compile="off") learns as well: same math, other
    rounding."""
    if native.load_bpr_kernel() is None:
        pytest.skip(f"the C kernel does not build here: {native.build_error()}")
    assert trained.compiled_update and trained.best_val_recall > 0.5, trained.history
    eager = train_bpr(data.train, replace(CONFIG, compile="off"), tmp_path / "eager.pt", validation=data.val,
                      accelerator="cpu")
    assert not eager.compiled_update
    assert abs(eager.best_val_recall - trained.best_val_recall) <= 0.05, (eager.history, trained.history)


def test_without_a_c_compiler_training_falls_back_to_the_torch_step(data: Planted, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_compiler", lambda: None)
    config = replace(CONFIG, max_epochs=1)
    auto = train_bpr(data.train, config, tmp_path / "auto.pt", validation=data.val, accelerator="cpu")
    with pytest.warns(UserWarning, match="did not build"):
        on = train_bpr(data.train, replace(config, compile="on"), tmp_path / "on.pt", validation=data.val,
                       accelerator="cpu")
    assert not auto.compiled_update and not on.compiled_update and "no C compiler" in native.build_error()
    off = train_bpr(data.train, replace(config, compile="off"), tmp_path / "off.pt", validation=data.val,
                    accelerator="cpu")
    assert torch.equal(load_checkpoint(auto.checkpoint).users.weight, load_checkpoint(off.checkpoint).users.weight)


def test_fixed_triplet_batches_are_seeded_permutations() -> None:
    triplets = torch.arange(30).reshape(10, 3)
    batches = ShuffledTripletBatches(triplets, batch_size=4, seed=0)
    first, second = torch.cat(list(batches)), torch.cat(list(batches))
    assert [b.shape[0] for b in batches] == [4, 4, 2] and len(batches) == 3
    for epoch in (first, second):  # every row exactly once per pass
        assert sorted(epoch[:, 0].tolist()) == triplets[:, 0].tolist()
    assert not torch.equal(first, second)  # a fresh permutation per epoch
    assert torch.equal(torch.cat(list(ShuffledTripletBatches(triplets, 4, seed=0))), first)  # seeded


def _epoch_rows(data: Planted, config: BPRConfig, rows: int = 512) -> tuple[EpochTriplets, list[np.ndarray]]:
    users = np.repeat(np.arange(data.n_users), np.diff(data.train.indptr))
    dataset = EpochTriplets(InteractionSet.from_csr(data.train), users, data.train.indices.astype(np.int64),
                            config, rows)
    return dataset, [torch.cat(list(dataset)).numpy() for _ in range(2)]


def test_epoch_negatives_are_redrawn_and_never_interactions(data: Planted) -> None:
    dataset, (first, second) = _epoch_rows(data, CONFIG)
    interactions = InteractionSet.from_csr(data.train)
    for epoch in (first, second):
        assert epoch.shape == (data.train.nnz * 4, 3)
        # every positive exactly negatives_per_positive times per epoch
        pairs = np.sort(epoch[:, 0] * data.n_playlists + epoch[:, 1])
        expected = np.sort(np.repeat(interactions.keys, 4))
        np.testing.assert_array_equal(pairs, expected)
        assert not interactions.contains(epoch[:, 0], epoch[:, 2]).any()
    assert (first[:, 2] != second[:, 2]).mean() > 0.9  # fresh negatives every epoch
    # seeded: a new dataset replays the same epochs
    _, (again, _) = _epoch_rows(data, CONFIG)
    np.testing.assert_array_equal(again, first)
    # uniform over the non-interactions: every allowed playlist is drawn, roughly evenly
    counts = np.bincount(first[:, 2], minlength=data.n_playlists)
    assert (counts > 0).mean() > 0.99 and counts.max() < 4 * counts.mean()


def test_popularity_negatives_follow_popularity(data: Planted) -> None:
    _, (uniform, _) = _epoch_rows(data, CONFIG)
    _, (popular, _) = _epoch_rows(data, replace(CONFIG, negatives="popularity", popularity_exponent=1.0))
    weights = np.bincount(data.train.indices, minlength=data.n_playlists) + 1.0
    top = np.argsort(-weights)[: data.n_playlists // 10]
    share = lambda rows: np.isin(rows[:, 2], top).mean()  # noqa: E731
    assert share(popular) > 1.5 * share(uniform), (share(popular), share(uniform))
    assert not InteractionSet.from_csr(data.train).contains(popular[:, 0], popular[:, 2]).any()


def test_hard_negatives_are_the_models_best_non_interactions(data: Planted) -> None:
    config = replace(CONFIG, negatives="hard", hard_candidates=8, negatives_per_positive=1)
    _, (rows, _) = _epoch_rows(data, config)
    assert rows.shape == (data.train.nnz, 3 + 8)
    interactions = InteractionSet.from_csr(data.train)
    module = BPRModule(data.n_users, data.n_playlists, config, interactions=interactions)
    triplets = module.mine(torch.from_numpy(rows)).numpy()
    np.testing.assert_array_equal(triplets[:, :2], rows[:, :2])
    assert not interactions.contains(triplets[:, 0], triplets[:, 2]).any()
    net = module.net
    scores = (net.users.weight[rows[:, 0]][:, None, :] * net.playlists.weight[rows[:, 3:]]).sum(-1).detach().numpy()
    allowed = ~interactions.contains(rows[:, :1], rows[:, 3:])
    best = np.where(allowed, scores, -np.inf).max(axis=1)
    chosen = np.flatnonzero(allowed[:, :].any(axis=1))
    picked_score = (net.users.weight[triplets[:, 0]] * net.playlists.weight[triplets[:, 2]]).sum(-1).detach().numpy()
    # the picked negative scores like the best allowed candidate (within the top 4 checked)
    hit = picked_score[chosen] >= best[chosen] - 1e-6
    assert hit.mean() > 0.99, hit.mean()


def test_native_hard_mining_picks_what_mine_picks(data: Planted) -> None:
    """The C kernel's mining (inside its minibatch loop, weights as they are before each
    minibatch) picks the negatives BPRModule.mine picks, and then steps like the torch step
    on those triplets."""
    config = replace(CONFIG, negatives="hard", hard_candidates=8, negatives_per_positive=1)
    _, (rows, _) = _epoch_rows(data, config)
    rows = torch.from_numpy(rows[:1000])
    interactions = InteractionSet.from_csr(data.train)
    modules = [BPRModule(data.n_users, data.n_playlists, config, interactions=interactions) for _ in range(2)]
    fast = NativeBPRStep(_native_step().kernel, config.batch_size, interactions)
    size, expected = 256, 0.0
    torch_params = (modules[0].net.users.weight.data, modules[0].net.playlists.weight.data,
                    modules[0].net.bias.weight.data[:, 0])
    for start in range(0, rows.shape[0], size):  # the torch path: mine, then step, per minibatch
        triplets = modules[0].mine(rows[start : start + size])
        assert not interactions.contains(triplets[:, 0].numpy(), triplets[:, 2].numpy()).any()
        expected += float(FusedBPRStep()(*torch_params, triplets, config.lr, config.reg))
    fast.batch_size = size
    got = fast.minibatches(modules[1].net.users.weight.data, modules[1].net.playlists.weight.data,
                           modules[1].net.bias.weight.data[:, 0], rows, config.lr, config.reg, mine_top=4)
    assert got == pytest.approx(expected, rel=1e-5)
    for name, value in modules[0].net.state_dict().items():
        torch.testing.assert_close(modules[1].net.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_native_membership_equals_searchsorted(data: Planted) -> None:
    interactions = InteractionSet.from_csr(data.train)
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.n_users, (500, 1))
    playlists = np.concatenate([rng.integers(0, data.n_playlists, (500, 7)),
                                data.train.indices[rng.integers(0, data.train.nnz, (500, 1))]], axis=1)
    kernel = _native_step().kernel
    got = kernel.contains(interactions.keys, interactions.indptr, data.n_playlists, users, playlists)
    expected = interactions.contains_searchsorted(users, playlists)
    assert got.shape == (500, 8) and got.dtype == bool and expected.any()
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(interactions.contains(users, playlists), expected)
    empty = InteractionSet.from_csr(sp.csr_matrix((3, 4), dtype=np.float32))
    assert not empty.contains(np.arange(3)[:, None], np.arange(4)[None, :]).any()


def test_bpr_beats_popularity_on_planted_clusters(data: Planted, trained) -> None:
    popularity = evaluate_full(popularity_scorer(popularity_scores(data.train)), data.test)["all"]["recall@10"]
    ckpt = read_checkpoint(trained.checkpoint)
    bpr = _recall(ckpt.net, data.test)
    assert bpr > 0.3 and bpr > 2 * popularity, (bpr, popularity)
    # the checkpoint holds the best epoch, and the reported val recall is reproducible from it
    assert ckpt.epoch == trained.best_epoch and ckpt.val_recall == trained.best_val_recall
    assert _recall(ckpt.net, data.val) == pytest.approx(trained.best_val_recall, abs=1e-9)
    assert max(row.get("val_recall@10", -1) for row in trained.history) == pytest.approx(trained.best_val_recall)
    assert 1 <= trained.epochs_run <= CONFIG.max_epochs and trained.triplets_per_second > 0
    assert trained.device == "cpu" and trained.leak_free


def test_hard_negatives_learn_too(data: Planted, tmp_path: Path) -> None:
    config = replace(CONFIG, negatives="hard", negatives_per_positive=2, hard_candidates=8)
    result = train_bpr(data.train, config, tmp_path / "hard.pt", validation=data.val, accelerator="cpu")
    popularity = evaluate_full(popularity_scorer(popularity_scores(data.train)), data.test)["all"]["recall@10"]
    assert _recall(load_checkpoint(result.checkpoint), data.test) > 2 * popularity


def test_checkpoint_round_trips_with_weights_only(trained, tmp_path: Path) -> None:
    payload = torch.load(trained.checkpoint, weights_only=True)
    assert set(payload) == {"format", "state_dict", "hparams", "epoch", "val_recall"}
    assert payload["hparams"]["dim"] == CONFIG.dim and payload["hparams"]["n_users"] == 200
    assert payload["hparams"]["negatives"] == "uniform"
    net = load_checkpoint(trained.checkpoint)
    copy = tmp_path / "sub" / "copy.pt"
    save_checkpoint(copy, net, payload["hparams"], epoch=payload["epoch"], val_recall=payload["val_recall"])
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
    again = train_bpr(data.train, CONFIG, tmp_path / "again.pt", validation=data.val, accelerator="cpu")
    first = load_checkpoint(trained.checkpoint).state_dict()
    second = load_checkpoint(again.checkpoint).state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert again.history == trained.history and again.compiled_update == trained.compiled_update
    other = train_bpr(data.train, replace(CONFIG, seed=4, max_epochs=1), tmp_path / "other.pt", validation=data.val,
                      accelerator="cpu")
    assert not torch.equal(load_checkpoint(other.checkpoint).users.weight, second["users.weight"])


def test_seed_recipe_trains_on_the_fixed_triplets_and_is_marked_leaky(data: Planted, tmp_path: Path) -> None:
    users = np.repeat(np.arange(data.n_users), np.diff(data.train.indptr))
    rng = np.random.default_rng(0)
    triplets = np.stack([users, data.train.indices, rng.integers(0, data.n_playlists, users.size)], axis=1)
    config = replace(CONFIG, negatives="seed_leaky")
    result = train_bpr(data.train, config, tmp_path / "seed.pt", validation=data.val, accelerator="cpu",
                       triplets=triplets)
    assert not result.leak_free and not config.leak_free
    # int32 triplets (kept as int32 in memory) train exactly like int64 ones
    narrow = train_bpr(data.train, config, tmp_path / "i32.pt", validation=data.val, accelerator="cpu",
                       triplets=triplets.astype(np.int32))
    assert torch.equal(load_checkpoint(narrow.checkpoint).users.weight, load_checkpoint(result.checkpoint).users.weight)


@pytest.mark.parametrize("optimizer", ["sparse_adam", "adam"])
def test_autograd_optimizers_also_learn(data: Planted, optimizer: str, tmp_path: Path) -> None:
    config = replace(CONFIG, optimizer=optimizer, lr=0.05, max_epochs=5)
    result = train_bpr(data.train, config, tmp_path / "m.pt", validation=data.val, accelerator="cpu")
    assert result.best_val_recall > 0.2, result.history


def test_without_validation_trains_all_epochs_and_keeps_the_last(data: Planted, tmp_path: Path) -> None:
    empty = RankingTask("val", np.zeros(0, np.int64), data.val.relevant, data.val.excluded, {})
    result = train_bpr(data.train, replace(CONFIG, max_epochs=2), tmp_path / "m.pt", validation=empty,
                       accelerator="cpu")
    assert result.epochs_run == 2 and np.isnan(result.best_val_recall) and result.best_epoch == -1
    ckpt = read_checkpoint(result.checkpoint)
    assert ckpt.epoch == 1 and np.isnan(ckpt.val_recall)
    assert [row["epoch"] for row in result.history] == [0, 1]


def test_bad_input_rejected(data: Planted, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training interactions"):
        train_bpr(sp.csr_matrix((2, 3), dtype=np.float32), CONFIG, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="fixed triplets are only"):
        train_bpr(data.train, CONFIG, tmp_path / "x.pt", triplets=np.array([[0, 1, 2]]))
    seed = replace(CONFIG, negatives="seed_leaky")
    with pytest.raises(ValueError, match="pass them as `triplets`"):
        train_bpr(data.train, seed, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="out of range"):
        train_bpr(data.train, seed, tmp_path / "x.pt", triplets=np.array([[0, 5000, 1]]))
    with pytest.raises(ValueError, match="integers"):
        train_bpr(data.train, seed, tmp_path / "x.pt", triplets=np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        train_bpr(data.train, seed, tmp_path / "x.pt", triplets=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="optimizer"):
        BPRConfig(optimizer="adagrad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negatives"):
        BPRConfig(negatives="by_score")
    full = sp.csr_matrix(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="every playlist"):
        train_bpr(full, CONFIG, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_training_reports_progress_per_validation(tmp_path) -> None:
    """A long fit says how it goes: one line per validation with the epoch and Recall@10."""
    n_users, n_playlists = 40, 30
    rng = np.random.default_rng(0)
    interactions = sp.random(n_users, n_playlists, density=0.2, format="csr", random_state=rng)
    interactions.data[:] = 1
    held = sp.random(n_users, n_playlists, density=0.05, format="csr", random_state=rng)
    relevant = (held - held.multiply(interactions)).tocsr()
    relevant.eliminate_zeros()
    relevant.data[:] = 1
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    task = RankingTask("val", users, relevant, interactions, {"all": np.ones(users.size, bool)})
    lines: list[str] = []
    config = BPRConfig(dim=8, max_epochs=4, val_every=2, patience=5, seed=0)
    train_bpr(interactions, config, tmp_path / "bpr.pt", validation=task, accelerator="cpu", progress=lines.append)
    assert len(lines) == 2, lines
    assert lines[0].startswith("bpr: epoch 2/4, validation recall@10 ") and lines[1].startswith("bpr: epoch 4/4")
