"""A song-aware ranker: users and playlists seen through the songs they share (no Dagster).

Two stages, as a recommender built on listening data would do it:

1. **Candidates** — the playlists that share at least one song with the user: one sparse
   product of the user's row of the user-song matrix with the song-playlist matrix. A user
   with a listening history but no training interaction (a cold user) has candidates too.
2. **A learned ranker** over each candidate pair: a small MLP of pair features computed from
   the song matrices and the training interactions (:data:`FEATURES`), plus a per-user
   embedding of ``user_dim`` numbers learned from the user's interactions (zeros for users
   without any, so cold users are ranked by the features alone).

Playlists outside the candidates follow, ordered by popularity.

Training sees only the training interactions (positives) and the song matrices; negatives
are drawn every epoch uniformly from the user's candidates outside their interactions (with
the same :class:`~spotify_assets.train.negatives.InteractionSet` as BPR), with the BPR loss.
Early stopping and the kept weights follow validation full-ranking Recall@10.

Scoring is plain numpy (:class:`~spotify_assets.train.song_scoring.SongRanker`, in a module
without torch), so the service can serve the model; :class:`RankerNet` is the torch twin used
for training and a test checks they agree.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
from torch import nn

from spotify_assets.evaluate.tasks import RankingTask
from spotify_assets.evaluate.metrics import average_per_user, full_ranking_per_user
from spotify_assets.train.negatives import InteractionSet, epoch_rng
from spotify_assets.train.progress import ProgressLog
from spotify_assets.train.song_scoring import FEATURES, SongRanker, SongSignals

_STREAM_RANKER = 0x5A9

@dataclass(frozen=True)
class SongRankerConfig:
    """Training settings (all read by :func:`train_song_ranker`).

    hidden : MLP width (two hidden layers). user_dim : per-user embedding size (0 = none).
    lr : Adam learning rate. weight_decay : L2 on the user embeddings.
    negatives_per_positive : candidate negatives per positive per epoch.
    users_per_batch : users whose candidates make one training step.
    max_epochs, patience : epochs at most; validations without a better Recall@10 before stopping.
    seed : initialisation, user order and negatives.
    """

    hidden: int = 32
    user_dim: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    negatives_per_positive: int = 8
    users_per_batch: int = 256
    max_epochs: int = 12
    patience: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "negatives_per_positive", "users_per_batch", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.user_dim < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("user_dim and weight_decay must be >= 0 and lr > 0")


class RankerNet(nn.Module):
    """score = MLP([(features - mean) / std, user_embedding]) with two ReLU hidden layers."""

    def __init__(self, n_users: int, n_features: int, hidden: int, user_dim: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.user_dim = user_dim
        self.users = nn.Embedding(n_users, max(user_dim, 1))
        self.layers = nn.ModuleList([nn.Linear(n_features + user_dim, hidden), nn.Linear(hidden, hidden),
                                     nn.Linear(hidden, 1)])
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        with torch.no_grad():
            self.users.weight.zero_()  # users without interactions keep the neutral embedding
            for layer in self.layers:
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()

    def forward(self, users: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """users int64 (n,), features float32 (n, F) -> float32 (n,) scores."""
        x = (features - self.feature_mean) / self.feature_std
        if self.user_dim:
            x = torch.cat([x, self.users(users)[:, : self.user_dim]], dim=1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x).squeeze(1)

    def export(self) -> dict[str, np.ndarray]:
        """The weights as float32 numpy arrays (what :class:`SongRanker` scores with)."""
        out = {"feature_mean": self.feature_mean, "feature_std": self.feature_std,
               "user_embeddings": self.users.weight[:, : self.user_dim]}
        for k, layer in enumerate(self.layers):
            out[f"w{k}"], out[f"b{k}"] = layer.weight.T, layer.bias
        return {name: value.detach().cpu().numpy().astype(np.float32).copy() for name, value in out.items()}


class CandidateBatches(torch.utils.data.IterableDataset):
    """Each pass: users with interactions in a seeded order, ``users_per_batch`` at a time;
    per block, every positive that is a candidate and ``negatives_per_positive`` uniform draws
    from the same user's candidates (a draw that is one of the user's interactions is masked).

    Yields (users int64 (P,), positive features float32 (P, F), negative features float32
    (P, n, F), valid bool (P, n)).
    """

    def __init__(self, signals: SongSignals, interactions: InteractionSet, config: SongRankerConfig):
        super().__init__()
        self.signals, self.interactions, self.config = signals, interactions, config
        self.users = np.flatnonzero(interactions.counts() > 0)
        self.passes = 0

    def __len__(self) -> int:
        return math.ceil(self.users.size / self.config.users_per_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rng = epoch_rng(self.config.seed, self.passes, _STREAM_RANKER)
        self.passes += 1
        order = rng.permutation(self.users)
        n_neg = self.config.negatives_per_positive
        for start in range(0, order.size, self.config.users_per_batch):
            users = np.sort(order[start : start + self.config.users_per_batch])
            overlap = self.signals.overlap(users)
            rows = np.repeat(np.arange(users.size), np.diff(overlap.indptr))
            positive = self.interactions.block(users).contains(rows, overlap.indices)
            chosen = np.flatnonzero(positive)
            if chosen.size == 0:
                continue
            size = np.diff(overlap.indptr)[rows[chosen]]
            draws = overlap.indptr[rows[chosen], None] + (rng.random((chosen.size, n_neg)) * size[:, None]).astype(np.int64)
            # features only of the entries used (a user has thousands of candidates at scale)
            entries, inverse = np.unique(np.concatenate([chosen, draws.ravel()]), return_inverse=True)
            features = self.signals.features(users, overlap, entries)[inverse.ravel()]
            yield (torch.from_numpy(users[rows[chosen]]), torch.from_numpy(features[: chosen.size]),
                   torch.from_numpy(features[chosen.size :].reshape(chosen.size, n_neg, -1)),
                   torch.from_numpy(~positive[draws]))


class RankerModule(pl.LightningModule):
    """Lightning wrapper: BPR loss of positives over their candidate negatives; validation
    full-ranking Recall@10 / NDCG@10 through the numpy scorer."""

    def __init__(self, signals: SongSignals, config: SongRankerConfig, validation: RankingTask | None):
        super().__init__()
        self.save_hyperparameters({"n_users": signals.n_users, "n_playlists": signals.n_playlists, **asdict(config)})
        self.signals, self.config, self.validation = signals, config, validation
        self.net = RankerNet(signals.n_users, len(FEATURES), config.hidden, config.user_dim, config.seed)
        self._val_parts: list[dict[str, np.ndarray]] = []
        self.last_val_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._loss, self._rows = 0.0, 0

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        users, positive, negative, valid = batch
        n_neg = negative.shape[1]
        s_pos = self.net(users, positive)
        s_neg = self.net(users.repeat_interleave(n_neg), negative.reshape(-1, positive.shape[1])).view(-1, n_neg)
        weight = valid.float()
        loss = (nn.functional.softplus(s_neg - s_pos[:, None]) * weight).sum() / weight.sum().clamp(min=1.0)
        self._loss += float(loss.detach()) * users.shape[0]
        self._rows += users.shape[0]
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([
            {"params": self.net.layers.parameters()},
            {"params": self.net.users.parameters(), "weight_decay": self.config.weight_decay},
        ], lr=self.config.lr)

    def on_train_epoch_end(self) -> None:
        if not self.history or self.history[-1]["epoch"] != self.current_epoch:
            self.history.append({"epoch": self.current_epoch})
        self.history[-1]["train_loss"] = self._loss / max(self._rows, 1)
        self._loss, self._rows = 0.0, 0

    def ranker(self) -> SongRanker:
        return SongRanker(self.signals, self.net.export())

    def validation_step(self, users: torch.Tensor, batch_idx: int) -> None:
        block = users.cpu().numpy()
        scores = self.ranker().score_all(block)
        self._val_parts.append(full_ranking_per_user(lambda _: scores, block, self.validation.relevant,
                                                     self.validation.excluded, ks=(10,), ndcg_k=10,
                                                     block_size=block.size))

    def on_validation_epoch_end(self) -> None:
        if not self._val_parts:
            return
        merged = {k: np.concatenate([part[k] for part in self._val_parts]) for k in self._val_parts[0]}
        self._val_parts = []
        self.last_val_metrics = average_per_user(merged)
        self.log("val_recall@10", self.last_val_metrics["recall@10"])
        if not self.history or self.history[-1]["epoch"] != self.current_epoch:
            self.history.append({"epoch": self.current_epoch})
        self.history[-1].update({f"val_{k}": v for k, v in self.last_val_metrics.items() if k != "users"})


class _KeepBest(pl.Callback):
    """Keeps a copy of the exported weights of the best validation Recall@10."""

    def __init__(self) -> None:
        self.best, self.best_epoch, self.weights = -math.inf, -1, None

    def on_validation_end(self, trainer: pl.Trainer, module: RankerModule) -> None:
        value = module.last_val_metrics.get("recall@10", -math.inf)
        if not trainer.sanity_checking and value > self.best:
            self.best, self.best_epoch, self.weights = value, trainer.current_epoch, module.net.export()


@dataclass(frozen=True)
class SongRankerResult:
    """weights : the kept (best-validation) weights; best_val_recall / best_epoch (NaN / -1
    without validation); epochs_run; train_seconds; device; history per epoch."""

    weights: dict[str, np.ndarray]
    best_val_recall: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)


def _feature_stats(signals: SongSignals, users: np.ndarray, sample_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_RANKER, 1]))
    chosen = np.sort(rng.choice(users, size=min(sample_users, users.size), replace=False))
    _, features = signals.candidates(chosen)
    if features.shape[0] == 0:
        return np.zeros(len(FEATURES), np.float32), np.ones(len(FEATURES), np.float32)
    return features.mean(axis=0), features.std(axis=0) + 1e-6


def train_song_ranker(signals: SongSignals, config: SongRankerConfig, validation: RankingTask | None = None,
                      accelerator: str = "auto", val_block_users: int = 512,
                      progress: Callable[[str], None] | None = None) -> SongRankerResult:
    """Train the ranker on the training interactions in ``signals``; keep the weights of the
    best validation Recall@10 (the last epoch's without validation).

    Parameters
    ----------
    signals : :class:`SongSignals` (song matrices, training interactions, neighbours).
    config : :class:`SongRankerConfig`.
    validation : the validation :class:`RankingTask`, or None.
    accelerator : Lightning accelerator ("auto" picks a GPU when there is one; the candidate
        features are computed on the CPU either way).
    val_block_users : users scored per validation step.
    """
    interactions = InteractionSet.from_csr(signals.interactions)
    data = CandidateBatches(signals, interactions, config)
    if data.users.size == 0:
        raise ValueError("no user has a training interaction: nothing to train the ranker on")
    torch.manual_seed(config.seed)
    module = RankerModule(signals, config, validation if validation is not None and validation.users.size else None)
    mean, std = _feature_stats(signals, data.users, 2048, config.seed)
    module.net.feature_mean.copy_(torch.from_numpy(mean))
    module.net.feature_std.copy_(torch.from_numpy(std))
    keeper = _KeepBest()
    callbacks: list[pl.Callback] = [keeper]
    if progress is not None:  # one line per validation: epoch, Recall@10, seconds
        callbacks.append(ProgressLog(progress, "song ranker", every=1))
    val_loader = None
    if module.validation is not None:
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val_recall@10", mode="max", patience=config.patience))
        users = torch.from_numpy(module.validation.users.astype(np.int64))
        val_loader = torch.utils.data.DataLoader(
            [users[i : i + val_block_users] for i in range(0, users.shape[0], val_block_users)], batch_size=None)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=config.max_epochs, callbacks=callbacks,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        warnings.filterwarnings("ignore", message=".*treespec.*")
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None),
                    val_dataloaders=val_loader)
    seconds = time.perf_counter() - started
    weights = keeper.weights if keeper.weights is not None else module.net.export()
    return SongRankerResult(weights, keeper.best if keeper.best_epoch >= 0 else float("nan"), keeper.best_epoch,
                            int(trainer.current_epoch), seconds, str(module.device), module.history)
