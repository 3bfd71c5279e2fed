"""Bayesian Personalized Ranking as a LightningModule (DESIGN §3), no Dagster imports.

x_uj = <w_u, h_j> + b_j;  loss = softplus(-(x_ui - x_uj)) + L2 on the rows in the batch.

Batches are slices of one seeded permutation of the in-memory triplet tensor per epoch
(no per-sample ``__getitem__``). Two optimizers:

* ``sgd`` (default): automatic optimization off; ``training_step`` computes the BPR
  gradients in closed form and applies them with ``index_add_`` (repeated rows add up),
  the update ``implicit`` uses, without autograd's bookkeeping.
* ``sparse_adam``: autograd with sparse embedding gradients and ``torch.optim.SparseAdam``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from spotify_assets.metrics import sampled_metrics


@dataclass(frozen=True)
class BPRConfig:
    dim: int = 128
    lr: float = 0.05
    reg: float = 1e-4
    batch_size: int = 16384
    max_epochs: int = 30
    optimizer: str = "sgd"
    seed: int = 0
    patience: int = 3
    init_std: float = 0.1


class BPRNet(nn.Module):
    """User and playlist embeddings plus a playlist bias."""

    def __init__(self, n_users: int, n_playlists: int, dim: int, init_std: float, sparse: bool):
        super().__init__()
        self.users = nn.Embedding(n_users, dim, sparse=sparse)
        self.playlists = nn.Embedding(n_playlists, dim, sparse=sparse)
        self.bias = nn.Embedding(n_playlists, 1, sparse=sparse)
        nn.init.normal_(self.users.weight, std=init_std)
        nn.init.normal_(self.playlists.weight, std=init_std)
        nn.init.zeros_(self.bias.weight)

    def score(self, users: torch.Tensor, playlists: torch.Tensor) -> torch.Tensor:
        """users (B,), playlists (B, n) -> (B, n) scores."""
        w = self.users(users)  # (B, d)
        h = self.playlists(playlists)  # (B, n, d)
        return torch.einsum("bd,bnd->bn", w, h) + self.bias(playlists).squeeze(-1)


class TripletBatches(torch.utils.data.IterableDataset):
    """Yields (B, 3) slices of a fresh seeded permutation of ``triplets`` each epoch."""

    def __init__(self, triplets: torch.Tensor, batch_size: int, seed: int):
        self.triplets = triplets
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.triplets.shape[0] / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.triplets.shape[0], generator=generator)
        for start in range(0, order.numel(), self.batch_size):
            yield self.triplets[order[start : start + self.batch_size]]


class BPRModule(pl.LightningModule):
    def __init__(self, n_users: int, n_playlists: int, config: BPRConfig,
                 val_batch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        super().__init__()
        self.save_hyperparameters({"n_users": n_users, "n_playlists": n_playlists, **asdict(config)})
        self.config = config
        self.net = BPRNet(n_users, n_playlists, config.dim, config.init_std, sparse=config.optimizer == "sparse_adam")
        self.automatic_optimization = config.optimizer != "sgd"
        self.val_batch = val_batch
        self.best_val_mrr = -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    # one shared step: the BPR loss for a batch of triplets
    def step(self, batch: torch.Tensor) -> torch.Tensor:
        u, i, j = batch[:, 0], batch[:, 1], batch[:, 2]
        scores = self.net.score(u, torch.stack([i, j], dim=1))
        x = scores[:, 0] - scores[:, 1]
        reg = self.config.reg * (
            self.net.users(u).pow(2).sum() + self.net.playlists(i).pow(2).sum() + self.net.playlists(j).pow(2).sum()
        )
        return nn.functional.softplus(-x).mean() + reg / batch.shape[0]

    def training_step(self, batch: torch.Tensor, batch_idx: int):
        if self.automatic_optimization:
            loss = self.step(batch)
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch.shape[0])
            return loss
        return self._sgd_step(batch)

    @torch.no_grad()
    def _sgd_step(self, batch: torch.Tensor) -> torch.Tensor:
        """Closed-form BPR gradients applied in place (mean over the batch, like the loss)."""
        u, i, j = batch[:, 0], batch[:, 1], batch[:, 2]
        W, H, b = self.net.users.weight, self.net.playlists.weight, self.net.bias.weight
        wu, hi, hj = W[u], H[i], H[j]
        x = (wu * (hi - hj)).sum(1) + b[i, 0] - b[j, 0]
        g = torch.sigmoid(-x)  # -dloss/dx
        lr, reg = self.config.lr, self.config.reg
        step = lr * g[:, None]
        W.index_add_(0, u, step * (hi - hj) - lr * reg * wu)
        H.index_add_(0, i, step * wu - lr * reg * hi)
        H.index_add_(0, j, -step * wu - lr * reg * hj)
        b.index_add_(0, i, lr * g[:, None])
        b.index_add_(0, j, -lr * g[:, None])
        loss = nn.functional.softplus(-x).mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch.shape[0])
        return loss

    def configure_optimizers(self):
        if self.config.optimizer == "sparse_adam":
            return torch.optim.SparseAdam(self.parameters(), lr=self.config.lr)
        if self.config.optimizer == "sgd":
            return None
        raise ValueError(f"unknown optimizer {self.config.optimizer!r}: use 'sgd' or 'sparse_adam'")

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, TripletBatches):
            dataset.epoch = self.current_epoch

    @torch.no_grad()
    def score_batch(self, users: np.ndarray, candidates: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Scores (B, n) of candidate playlists (B, n) for users (B,)."""
        out = []
        for start in range(0, users.shape[0], chunk):
            u = torch.as_tensor(users[start : start + chunk], device=self.device)
            c = torch.as_tensor(candidates[start : start + chunk], device=self.device)
            out.append(self.net.score(u, c).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, candidates.shape[1]), np.float32)

    def on_train_epoch_end(self) -> None:
        if self.val_batch is None:
            return
        users, positives, negatives = self.val_batch
        scores = self.score_batch(users, np.concatenate([positives[:, None], negatives], axis=1))
        metrics = sampled_metrics(scores)
        self.log("val_mrr", metrics["mrr"], prog_bar=False)
        self.history.append({"epoch": self.current_epoch, **metrics})
        if metrics["mrr"] > self.best_val_mrr:
            self.best_val_mrr = metrics["mrr"]
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}


@dataclass(frozen=True)
class BPRResult:
    best_val_mrr: float
    epochs_run: int
    triplets_per_second: float
    train_seconds: float
    device: str
    checkpoint: str
    history: list[dict[str, float]]


def save_checkpoint(path: Path, module: BPRModule) -> None:
    """Atomically write the best weights and hyperparameters (a plain tensor dict)."""
    state = module.best_state or {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    payload = {"state_dict": state, "hparams": json.dumps(dict(module.hparams))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, map_location: str = "cpu") -> BPRNet:
    """Load weights saved by :func:`save_checkpoint` with ``weights_only=True`` (no pickle code)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    hparams = json.loads(payload["hparams"])
    net = BPRNet(hparams["n_users"], hparams["n_playlists"], hparams["dim"], hparams["init_std"], sparse=False)
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return net


def train_bpr(
    triplets: np.ndarray,
    n_users: int,
    n_playlists: int,
    config: BPRConfig,
    checkpoint: Path,
    val_batch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    accelerator: str = "auto",
) -> BPRResult:
    """Train on (N, 3) int64 triplets; early-stop on val MRR; write the best checkpoint."""
    triplets = np.asarray(triplets, dtype=np.int64)
    if triplets.ndim != 2 or triplets.shape[1] != 3:
        raise ValueError(f"triplets must be (N, 3), got {triplets.shape}")
    if triplets.size and (triplets[:, 0].max() >= n_users or triplets[:, 1:].max() >= n_playlists or triplets.min() < 0):
        raise ValueError("triplet ids out of range")
    if val_batch is not None and len(val_batch[0]) == 0:
        val_batch = None  # no validation rows (tiny data): train max_epochs without early stopping
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = BPRModule(n_users, n_playlists, config, val_batch)
    callbacks = []
    if val_batch is not None:
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val_mrr", mode="max", patience=config.patience))
    trainer = pl.Trainer(
        accelerator=accelerator, devices=1, max_epochs=config.max_epochs, callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=True,
    )
    data = torch.utils.data.DataLoader(TripletBatches(torch.from_numpy(triplets), config.batch_size, config.seed),
                                       batch_size=None)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=data)
    seconds = time.perf_counter() - started
    epochs = trainer.current_epoch
    save_checkpoint(checkpoint, module)
    return BPRResult(
        best_val_mrr=float(module.best_val_mrr) if val_batch is not None else float("nan"),
        epochs_run=int(epochs),
        triplets_per_second=triplets.shape[0] * max(epochs, 1) / max(seconds, 1e-9),
        train_seconds=seconds,
        device=str(module.device),
        checkpoint=str(checkpoint),
        history=module.history,
    )


@torch.no_grad()
def score_all(net: BPRNet, users: np.ndarray) -> np.ndarray:
    """(len(users), n_playlists) float32 scores of every playlist."""
    w = net.users.weight[torch.as_tensor(users)]
    return (w @ net.playlists.weight.T + net.bias.weight[:, 0]).float().numpy()
