"""Bayesian Personalized Ranking as a LightningModule, no Dagster imports.

Model: ``x_uj = <w_u, h_j> + b_j``; per triplet (u, i, j) the objective is
``softplus(-(x_ui - x_uj)) + reg/2 · (|w_u|² + |h_i|² + |h_j|²)`` (the bias is not
regularized).

Data: the training interactions (train likes, feedback likes, owned playlists; one binary
CSR) and nothing else. Every epoch draws a seeded permutation of the positives and fresh
negatives for them (:class:`EpochTriplets`, modes in :mod:`spotify_assets.train.negatives`):
uniform or popularity-weighted over the playlists outside the user's interactions, or mined
from the model's own ranking ("hard": of ``hard_candidates`` uniform draws, the one the
current weights score highest). No per-sample ``__getitem__``, no triplet tensor kept
between epochs: memory is the positives plus one step's rows.

The original system's recipe ("seed_leaky": fixed triplets with 2 negatives from the label
score's hard pool + 2 excluding every liked playlist) needs held-out knowledge; it is kept
only to reproduce the original numbers, passed in as ``triplets`` and marked leaky.

Optimizers (``BPRConfig.optimizer``):

``"sgd"`` (default, fastest)
    Automatic optimization off. ``training_step`` computes the BPR gradients in closed
    form and applies them in place: per-triplet SGD steps of size ``lr`` (gradients of
    repeated rows in a minibatch add up, all taken at the minibatch's starting weights),
    the update ``implicit`` applies, without autograd's bookkeeping or per-step
    allocations; on CPU in the C kernel (below), on a GPU with ``index_add_`` into
    preallocated buffers (:class:`FusedBPRStep`).
``"sparse_adam"``
    Autograd, sparse embedding gradients, ``torch.optim.SparseAdam`` (loss = batch mean).
``"adam"``
    Autograd, dense gradients, ``torch.optim.Adam``; touches every row each step, so
    only for small tables.

Native update (``BPRConfig.compile``, "sgd" on CPU). The eager fused step spends its
time in separate passes (gather, five elementwise ops, ``index_add_`` with a per-row
dispatch) over (B, d) buffers, and the tables are far bigger than the caches, so most of a
step is waiting for random rows. :class:`NativeBPRStep` runs the same update as one C loop
(``bpr_kernel.c``, built by the machine's C compiler with ``-march=native`` in ~0.3 s,
cached on disk; :mod:`spotify_assets.train.native`): each row is fetched once, written once,
and the rows of the next triplets are prefetched. It is single-threaded and deterministic.
It also mines the "hard" negatives of each minibatch (same rule as :meth:`BPRModule.mine`)
before stepping it. Without a C compiler it falls back to the eager step (with a warning
for ``compile="on"``).
It replaced a ``torch.compile`` (TorchInductor) version, which took ~20 s to compile and ran
no faster than the eager step on AVX2 CPUs (0.62-0.79x implicit there; the C loop does not
depend on the vector unit: its SSE2-only build is ~2.6x the eager step on an AVX-512 CPU).

Validation: full-ranking Recall@10 and NDCG@10 of a validation
:class:`~spotify_assets.evaluate.tasks.RankingTask` (every playlist ranked except the user's
interactions; answers: validation positives) every ``val_every`` epochs; ``EarlyStopping``
on Recall@10 (mode max) and :class:`BestWeightsCheckpoint`, which writes the best weights
atomically as a plain tensor dict with the hyperparameters, readable with
``torch.load(..., weights_only=True)``.

Reproducibility: on CPU two runs with the same seed give bit-identical weights (seeded
init from a local generator, seeded permutations and draws, deterministic CPU kernels). On
GPU, ``index_add_`` accumulates with atomics, so runs agree only up to float rounding. The C
kernel is built for the CPU it runs on (FMA or not), so two CPU models may differ in the
last bits; the torch step (``compile="off"``) agrees with it up to float rounding.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
from torch import nn

from spotify_assets.atomic import atomic_write
from spotify_assets.evaluate.tasks import RankingTask
from spotify_assets.evaluate.metrics import average_per_user, full_ranking_per_user
from spotify_assets.train.bpr_config import BPRConfig
from spotify_assets.train.native import BPRKernel, HardMining, build_error, load_bpr_kernel
from spotify_assets.train.progress import ProgressLog, TrainClock
from spotify_assets.train.negatives import (
    InteractionSet,
    NegativeSampler,
    epoch_rng,
    first_non_interaction,
)

CHECKPOINT_FORMAT = "spotify_assets.bpr/2"
# "sgd" hands Lightning steps of whole minibatches totalling about this many triplets
ROWS_PER_FUSED_STEP = 65536
_STREAM_EPOCH_NEGATIVES = 0xB9C
#: hard mining checks this many of the best-scored candidates for a non-interaction
MINE_TOP = 4


class BPRNet(nn.Module):
    """User and playlist embeddings plus a playlist bias.

    Parameters: ``users.weight`` (n_users, dim), ``playlists.weight`` (n_playlists, dim),
    ``bias.weight`` (n_playlists, 1), float32.
    """

    def __init__(self, n_users: int, n_playlists: int, dim: int, init_std: float = 0.1, sparse: bool = False,
                 seed: int | None = None):
        super().__init__()
        self.users = nn.Embedding(n_users, dim, sparse=sparse)
        self.playlists = nn.Embedding(n_playlists, dim, sparse=sparse)
        self.bias = nn.Embedding(n_playlists, 1, sparse=sparse)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            self.users.weight.normal_(0.0, init_std, generator=generator)
            self.playlists.weight.normal_(0.0, init_std, generator=generator)
            self.bias.weight.zero_()

    @property
    def n_users(self) -> int:
        return self.users.num_embeddings

    @property
    def n_playlists(self) -> int:
        return self.playlists.num_embeddings

    def score(self, users: torch.Tensor, playlists: torch.Tensor) -> torch.Tensor:
        """users int64 (B,), playlists int64 (B, n) -> float32 (B, n) scores."""
        w = self.users(users)
        h = self.playlists(playlists)
        return torch.einsum("bd,bnd->bn", w, h) + self.bias(playlists).squeeze(-1)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """users int64 (b,) -> float32 (b, n_playlists) scores of every playlist."""
        return torch.addmm(self.bias.weight[:, 0], self.users(users), self.playlists.weight.T)

    def user_embeddings(self) -> np.ndarray:
        """float32 (n_users, dim) copy on the CPU."""
        return self.users.weight.detach().cpu().numpy().copy()

    def playlist_embeddings(self) -> np.ndarray:
        """float32 (n_playlists, dim) copy on the CPU."""
        return self.playlists.weight.detach().cpu().numpy().copy()

    def playlist_bias(self) -> np.ndarray:
        """float32 (n_playlists,) copy on the CPU."""
        return self.bias.weight.detach().cpu().numpy()[:, 0].copy()


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch, 0xB9B]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


class ShuffledTripletBatches(torch.utils.data.IterableDataset):
    """(≤ batch_size, 3) batches of fixed ``triplets`` (same dtype) taken along consecutive
    slices of a fresh seeded permutation per pass (pass ``e`` is seeded by ``(seed, e)``):
    the "seed_leaky" recipe's data. Use with ``DataLoader(dataset, batch_size=None)``."""

    def __init__(self, triplets: torch.Tensor, batch_size: int, seed: int):
        super().__init__()
        self.triplets = triplets
        self.batch_size = batch_size
        self.seed = seed
        self.passes = 0

    def __len__(self) -> int:
        return math.ceil(self.triplets.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.triplets.shape[0], generator=_epoch_generator(self.seed, self.passes))
        self.passes += 1
        for start in range(0, order.shape[0], self.batch_size):
            yield torch.index_select(self.triplets, 0, order[start : start + self.batch_size])


class EpochTriplets(torch.utils.data.IterableDataset):
    """Each pass (epoch ``e``): the positives in a seeded permutation, each repeated
    ``negatives_per_positive`` times, with negatives drawn afresh from the training
    interactions by ``SeedSequence([seed, stream, e])``.

    Yields int64 tensors of at most ``rows`` rows: (n, 3) triplets (user, positive,
    negative) for "uniform"/"popularity"; for "hard", (n, 3 + K): the user, the positive,
    an exact uniform fallback negative, then K unchecked uniform candidates, of which the
    training step keeps the one its current weights score highest (:meth:`BPRModule.mine`).
    """

    def __init__(self, interactions: InteractionSet, users: np.ndarray, playlists: np.ndarray, config: BPRConfig,
                 rows: int):
        super().__init__()
        self.interactions = interactions
        self.users, self.playlists = np.asarray(users, np.int64), np.asarray(playlists, np.int64)
        self.sampler = NegativeSampler(interactions, "popularity" if config.negatives == "popularity" else "uniform",
                                       config.popularity_exponent)
        self.hard = config.negatives == "hard"
        self.repeat = config.negatives_per_positive
        self.candidates = config.hard_candidates
        self.seed = config.seed
        self.rows = max(rows - rows % self.repeat, self.repeat)
        self.passes = 0

    @property
    def triplets_per_epoch(self) -> int:
        return self.users.size * self.repeat

    def __len__(self) -> int:
        return math.ceil(self.triplets_per_epoch / self.rows)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = epoch_rng(self.seed, self.passes, _STREAM_EPOCH_NEGATIVES)
        self.passes += 1
        order = rng.permutation(self.users.size)
        per_chunk = self.rows // self.repeat
        for start in range(0, order.size, per_chunk):
            chosen = order[start : start + per_chunk]
            users = np.repeat(self.users[chosen], self.repeat)
            positives = np.repeat(self.playlists[chosen], self.repeat)
            negatives = self.sampler.draw(rng, users, 1)
            columns = [users[:, None], positives[:, None], negatives]
            if self.hard:
                columns.append(rng.integers(0, self.interactions.n_playlists, size=(users.size, self.candidates),
                                            dtype=np.int64))
            yield torch.from_numpy(np.concatenate(columns, axis=1))


class ValidationBlocks(torch.utils.data.IterableDataset):
    """int64 (b,) blocks of a validation task's users, ``block`` at a time."""

    def __init__(self, task: RankingTask, block: int):
        super().__init__()
        self.users = torch.from_numpy(np.ascontiguousarray(task.users, dtype=np.int64))
        self.block = block

    def __len__(self) -> int:
        return math.ceil(self.users.shape[0] / self.block)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, self.users.shape[0], self.block):
            yield self.users[start : start + self.block]


class Buffers:
    """Named scratch tensors reused across minibatches (grown when a bigger one is asked for),
    so a training step allocates nothing."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < shape[0] or buf.device != like.device or buf.dtype != like.dtype:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._buffers[name] = buf
        return buf[: shape[0]]


class FusedBPRStep:
    """One closed-form BPR SGD minibatch update, in place, with reused buffers."""

    def __init__(self) -> None:
        self._buffers = Buffers()
        self._buffer = self._buffers.get

    @torch.no_grad()
    def __call__(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, batch: torch.Tensor, lr: float,
                 reg: float) -> torch.Tensor:
        """Apply the update for ``batch`` (B, 3) int64 to W (n_users, d), H (n_playlists, d)
        and b (n_playlists,); returns the summed BPR loss of the batch (a 0-d tensor).

        Three (B, d) buffers (w_u, h_i | h_j, h_i - h_j) are the whole working set; the
        gradients are built in place in them.
        """
        n, d = batch.shape[0], W.shape[1]
        u = batch[:, 0].contiguous()
        ij = batch[:, 1:].T.reshape(-1)  # positives then negatives, contiguous
        wu = torch.index_select(W, 0, u, out=self._buffer("wu", (n, d), W))
        hij = torch.index_select(H, 0, ij, out=self._buffer("hij", (2 * n, d), H))
        diff = torch.sub(hij[:n], hij[n:], out=self._buffer("diff", (n, d), W))
        bij = b.index_select(0, ij)
        x = torch.linalg.vecdot(wu, diff).add_(bij[:n]).sub_(bij[n:])
        step = torch.sigmoid(-x).mul_(lr)  # lr · (-dloss/dx)
        decay = -lr * reg
        # users: w_u += step · (h_i - h_j) - lr·reg·w_u
        W.index_add_(0, u, diff.mul_(step[:, None]).add_(wu, alpha=decay))
        # playlists: h_i += step · w_u - lr·reg·h_i ;  h_j += -step · w_u - lr·reg·h_j
        hij.mul_(decay)
        hij[:n].addcmul_(wu, step[:, None])
        hij[n:].addcmul_(wu, step[:, None], value=-1.0)
        H.index_add_(0, ij, hij)
        b.index_add_(0, ij, torch.cat([step, step.neg()]))
        return nn.functional.softplus(-x).sum()


class NativeBPRStep:
    """:class:`FusedBPRStep`'s update run by the C kernel of :mod:`spotify_assets.train.native`
    (CPU tensors only): same math, each row fetched once and written once, with prefetching.
    Holds the kernel's scratch block (``3 * batch * d + batch`` float32), grown on demand."""

    def __init__(self, kernel: BPRKernel, batch_size: int, interactions: InteractionSet | None = None) -> None:
        self.kernel = kernel
        self.batch_size = batch_size
        self.interactions = interactions  # what hard mining checks candidates against
        self._scratch = torch.empty(0)
        self._mined = torch.empty(0, dtype=torch.int64)

    def _scratch_for(self, batch: int, d: int) -> torch.Tensor:
        need = 3 * batch * d + batch
        if self._scratch.numel() < need:
            self._scratch = torch.empty(need, dtype=torch.float32)
        return self._scratch

    def minibatches(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, lr: float,
                    reg: float, mine_top: int = 0) -> float:
        """Apply ``rows`` as consecutive minibatches of ``batch_size``, in place on W
        (n_users, d), H (n_playlists, d), b (n_playlists,) float32.

        ``mine_top == 0``: ``rows`` (n, >= 3) int are (user, positive, negative, ignored
        columns...), applied exactly as :class:`FusedBPRStep` called on each slice in turn
        would (float rounding aside). ``mine_top > 0``: ``rows`` (n, 3 + K) are
        :class:`EpochTriplets` "hard" rows and each minibatch's negatives are first mined
        with the weights as they are before it, by :meth:`BPRModule.mine`'s rule with
        ``top=mine_top`` (needs ``interactions``). Returns the summed BPR loss."""
        rows = rows.to(torch.int64).contiguous()
        batch = min(self.batch_size, max(rows.shape[0], 1))
        mining = None
        if mine_top:
            if self.interactions is None:
                raise ValueError("hard mining needs the interactions")
            if self._mined.numel() < 3 * batch:
                self._mined = torch.empty(3 * batch, dtype=torch.int64)
            mining = HardMining(self.interactions.keys, self.interactions.indptr, mine_top, self._mined)
        return self.kernel.minibatches(W, H, b, rows, batch, lr, reg, self._scratch_for(batch, W.shape[1]), mining)

    def __call__(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, batch: torch.Tensor, lr: float,
                 reg: float) -> float:
        """One minibatch: ``batch`` (B, 3) int, any B; see :meth:`FusedBPRStep.__call__`."""
        rows = batch.to(torch.int64).contiguous()
        n = max(rows.shape[0], 1)
        return self.kernel.minibatches(W, H, b, rows, n, lr, reg, self._scratch_for(n, W.shape[1]))


def use_native_update(config: BPRConfig, device: str) -> bool:
    """Whether the "sgd" path asks for the C kernel (CPU only; see ``BPRConfig.compile``)."""
    return config.optimizer == "sgd" and device == "cpu" and config.compile != "off"


class BPRModule(TrainClock, pl.LightningModule):
    """Lightning wrapper of :class:`BPRNet`: one shared :meth:`step` (BPR loss of a
    triplet batch), the fused SGD path with optional hard-negative mining, and full-ranking
    validation (Recall@10, NDCG@10) on a :class:`~spotify_assets.evaluate.tasks.RankingTask`."""

    def __init__(self, n_users: int, n_playlists: int, config: BPRConfig, n_triplets: int = 0,
                 interactions: InteractionSet | None = None, validation: RankingTask | None = None):
        super().__init__()
        self.n_triplets = n_triplets  # per epoch
        self.save_hyperparameters({"n_users": n_users, "n_playlists": n_playlists, **asdict(config)})
        self.config = config
        self.net = BPRNet(n_users, n_playlists, config.dim, config.init_std,
                          sparse=config.optimizer == "sparse_adam", seed=config.seed)
        self.automatic_optimization = config.optimizer != "sgd"
        self.interactions = interactions
        self.validation = validation
        self._fused: FusedBPRStep | NativeBPRStep = FusedBPRStep()
        self.kernel_seconds = 0.0  # building or loading the C kernel (on_train_start, not train time)
        self._mine_buffers = Buffers()
        self._epoch_loss: torch.Tensor | None = None
        self._epoch_rows = 0
        self._val_parts: list[dict[str, np.ndarray]] = []
        self.last_val_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.triplets_seen = 0
        self.trained_on = "cpu"  # Lightning moves the module back to the CPU after fit
        self._epoch_started = 0.0

    def step(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean BPR loss of (B, 3) triplets plus the L2 term (autograd path)."""
        u, i, j = batch[:, 0], batch[:, 1], batch[:, 2]
        scores = self.net.score(u, torch.stack([i, j], dim=1))
        x = scores[:, 0] - scores[:, 1]
        l2 = self.net.users(u).pow(2).sum() + self.net.playlists(batch[:, 1:]).pow(2).sum()
        return nn.functional.softplus(-x).mean() + 0.5 * self.config.reg * l2 / batch.shape[0]

    @torch.no_grad()
    def mine(self, rows: torch.Tensor, top: int = MINE_TOP) -> torch.Tensor:
        """(n, 3 + K) rows of :class:`EpochTriplets` ("hard") -> (n, 3) triplets whose
        negative is, of the K candidates, the one the current weights score highest among
        those outside the user's interactions (of the ``top`` best; else the exact uniform
        fallback column). Gathers into reused buffers: called once per minibatch."""
        n, k = rows.shape[0], rows.shape[1] - 3
        users, candidates = rows[:, 0], rows[:, 3:]
        W, H = self.net.users.weight, self.net.playlists.weight
        flat = candidates.reshape(-1)
        wu = torch.index_select(W, 0, users, out=self._mine_buffers.get("wu", (n, W.shape[1]), W))
        hc = torch.index_select(H, 0, flat, out=self._mine_buffers.get("hc", (n * k, H.shape[1]), H))
        scores = torch.bmm(hc.view(n, k, -1), wu.unsqueeze(2)).squeeze(2)
        scores += self.net.bias.weight[:, 0].index_select(0, flat).view(n, k)
        best = scores.topk(min(top, k), dim=1).indices
        ranked = torch.gather(candidates, 1, best)
        negatives = first_non_interaction(users.cpu().numpy(), ranked.cpu().numpy(), self.interactions,
                                          rows[:, 2].cpu().numpy())
        return torch.stack([users, rows[:, 1], torch.from_numpy(negatives).to(rows.device)], dim=1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            triplets = self.mine(batch) if batch.shape[1] > 3 else batch
            loss = self.step(triplets)
            self._accumulate(loss.detach() * triplets.shape[0], triplets.shape[0])
            return loss
        # the loader hands over several minibatches per step (Lightning's per-step overhead is
        # ~0.7 ms on CPU); they are applied one after the other, exactly as if stepped singly,
        # and hard negatives are mined with the weights as they are before each minibatch
        W, H, b = self.net.users.weight, self.net.playlists.weight, self.net.bias.weight[:, 0]
        size = self.config.batch_size
        if isinstance(self._fused, NativeBPRStep):  # one call, mining included
            loss = self._fused.minibatches(W, H, b, batch, self.config.lr, self.config.reg,
                                           mine_top=MINE_TOP if batch.shape[1] > 3 else 0)
            self._accumulate(loss, batch.shape[0])
            return None
        for start in range(0, batch.shape[0], size):
            rows = batch[start : start + size]
            triplets = self.mine(rows) if rows.shape[1] > 3 else rows
            self._accumulate(self._fused(W, H, b, triplets, self.config.lr, self.config.reg), triplets.shape[0])
        return None

    def _accumulate(self, loss_sum: torch.Tensor | float, rows: int) -> None:
        self._epoch_loss = loss_sum if self._epoch_loss is None else self._epoch_loss + loss_sum
        self._epoch_rows += rows

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        if self.config.optimizer == "sparse_adam":
            return torch.optim.SparseAdam(list(self.parameters()), lr=self.config.lr)
        if self.config.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.config.lr)
        return None

    def on_train_start(self) -> None:
        self.trained_on = str(self.device)
        if use_native_update(self.config, self.device.type):
            started = time.perf_counter()
            kernel = load_bpr_kernel()
            self.kernel_seconds = time.perf_counter() - started
            if kernel is not None:
                self._fused = NativeBPRStep(kernel, self.config.batch_size, self.interactions)
            elif self.config.compile == "on":
                warnings.warn(f"the C BPR kernel did not build, using the torch step: {build_error()}", stacklevel=2)

    def on_train_epoch_start(self) -> None:
        self._epoch_loss, self._epoch_rows = None, 0
        self._start_train_clock()

    def on_validation_epoch_start(self) -> None:
        self._stop_train_clock()  # validation runs inside the train epoch: not training time

    def on_train_epoch_end(self) -> None:
        self._stop_train_clock()
        self.triplets_seen += self._epoch_rows
        loss = float(self._epoch_loss) / max(self._epoch_rows, 1) if self._epoch_loss is not None else float("nan")
        if not self.history or self.history[-1]["epoch"] != self.current_epoch:
            self.history.append({"epoch": self.current_epoch})
        self.history[-1]["train_loss"] = loss

    def validation_step(self, users: torch.Tensor, batch_idx: int) -> None:
        scores = self.net.score_users(users).float().cpu().numpy()
        task = self.validation
        self._val_parts.append(full_ranking_per_user(lambda _: scores, users.cpu().numpy(), task.relevant,
                                                     task.excluded, ks=(10,), ndcg_k=10, block_size=users.shape[0]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_parts:
            return
        merged = {k: np.concatenate([part[k] for part in self._val_parts]) for k in self._val_parts[0]}
        self._val_parts = []
        metrics = average_per_user(merged)
        self.last_val_metrics = metrics
        self.log("val_recall@10", metrics["recall@10"], prog_bar=False)
        if not self.history or self.history[-1]["epoch"] != self.current_epoch:
            self.history.append({"epoch": self.current_epoch})
        self.history[-1].update({"val_recall@10": metrics["recall@10"], "val_ndcg@10": metrics["ndcg@10"]})


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BPRCheckpoint:
    """What a checkpoint file holds: the network (eval mode, CPU unless mapped) and its
    hyperparameters, the epoch it comes from and that epoch's validation Recall@10 (NaN:
    no validation)."""

    net: BPRNet
    hparams: dict[str, Any]
    epoch: int
    val_recall: float


def save_checkpoint(path: Path | str, net: BPRNet, hparams: dict[str, Any], epoch: int, val_recall: float) -> Path:
    """Atomically write ``{"format", "state_dict", "hparams", "epoch", "val_recall"}`` with
    ``torch.save`` (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "hparams": {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))},
        "epoch": int(epoch),
        "val_recall": float(val_recall),
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> BPRCheckpoint:
    """Load a checkpoint with ``torch.load(..., weights_only=True)`` (no pickled code)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (retrain bpr_model)")
    hparams = payload["hparams"]
    net = BPRNet(int(hparams["n_users"]), int(hparams["n_playlists"]), int(hparams["dim"]),
                 float(hparams["init_std"]), sparse=False)
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return BPRCheckpoint(net, dict(hparams), int(payload["epoch"]), float(payload["val_recall"]))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> BPRNet:
    """The network of :func:`read_checkpoint`."""
    return read_checkpoint(path, map_location).net


class BestWeightsCheckpoint(pl.Callback):
    """``ModelCheckpoint(monitor="val_recall@10", mode="max", save_top_k=1)`` writing a
    plain weights file: after every validation that improves the validation Recall@10 the
    weights are saved atomically to ``path``; without validation the last epoch's weights
    are saved."""

    def __init__(self, path: Path | str, monitor: str = "val_recall@10"):
        self.path = Path(path)
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = -1

    def on_validation_end(self, trainer: pl.Trainer, module: BPRModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        # the exact float64 metric (callback_metrics holds a float32 copy)
        value = module.last_val_metrics.get(self.monitor.removeprefix("val_"),
                                            float(trainer.callback_metrics[self.monitor]))
        if value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            save_checkpoint(self.path, module.net, dict(module.hparams), trainer.current_epoch, value)

    def on_train_end(self, trainer: pl.Trainer, module: BPRModule) -> None:
        if self.best_epoch < 0:  # never validated (no val rows): keep the final weights
            save_checkpoint(self.path, module.net, dict(module.hparams), trainer.current_epoch - 1, float("nan"))


# --------------------------------------------------------------------------------------
# training entry point
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BPRResult:
    """What :func:`train_bpr` reports.

    best_val_recall : best validation Recall@10 (NaN without validation users); best_epoch :
    its epoch (0-based, -1 without validation); epochs_run : epochs trained;
    triplets_per_second : triplets processed per second of training steps (validation
    excluded; hard mining included); train_seconds : wall time of the whole fit; device :
    where it trained; checkpoint : path of the best weights; history : per-epoch
    ``{"epoch", "train_loss", "val_recall@10", "val_ndcg@10"}``; compiled_update : whether
    the "sgd" update ran in the C kernel (``BPRConfig.compile``, :class:`NativeBPRStep`);
    compile_seconds : building (~0.3 s) or loading it, before training, not in
    ``triplets_per_second``; leak_free : False for "seed_leaky".
    """

    best_val_recall: float
    best_epoch: int
    epochs_run: int
    triplets_per_second: float
    train_seconds: float
    device: str
    checkpoint: str
    history: list[dict[str, float]] = field(default_factory=list)
    compiled_update: bool = False
    compile_seconds: float = 0.0
    leak_free: bool = True


def validate_triplets(triplets: np.ndarray | torch.Tensor, n_users: int, n_playlists: int) -> torch.Tensor:
    """(N, 3) CPU tensor of (user, positive, negative), int32 kept as int32 (no copy), any
    other integer type as int64; ValueError on a bad shape, dtype or ids."""
    tensor = torch.as_tensor(triplets, device="cpu")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"triplets must be integers, got {tensor.dtype}")
    if tensor.dtype not in (torch.int32, torch.int64):
        tensor = tensor.to(torch.int64)
    if tensor.ndim != 2 or tensor.shape[1] != 3:
        raise ValueError(f"triplets must be (N, 3), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError("no triplets to train on")
    if int(tensor.min()) < 0 or int(tensor[:, 0].max()) >= n_users or int(tensor[:, 1:].max()) >= n_playlists:
        raise ValueError(f"triplet ids out of range (users < {n_users}, playlists < {n_playlists})")
    return tensor.contiguous()


def _positives(interactions: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    matrix = sp.csr_matrix(interactions)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError("no training interactions to train on")
    users = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return users, matrix.indices.astype(np.int64)


def train_bpr(
    interactions: sp.csr_matrix,
    config: BPRConfig,
    checkpoint: Path | str,
    validation: RankingTask | None = None,
    accelerator: str = "auto",
    triplets: np.ndarray | torch.Tensor | None = None,
    val_block_users: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> BPRResult:
    """Train BPR; early-stop on validation Recall@10; write the best weights to ``checkpoint``.

    Parameters
    ----------
    interactions : (n_users, n_playlists) binary CSR of the training interactions (train
        likes, feedback likes, owned playlists): the positives, and what negatives avoid.
    config : :class:`BPRConfig`.
    checkpoint : file the best weights are written to (atomically; see :func:`read_checkpoint`).
    validation : the validation :class:`RankingTask` (answers: validation positives;
        excluded: the interactions); None or no users trains ``max_epochs`` epochs without
        early stopping and keeps the last weights.
    accelerator : Lightning accelerator ("auto" picks a GPU when there is one).
    triplets : int (N, 3) fixed triplets, required by (and only used with)
        ``negatives="seed_leaky"``.
    val_block_users : users scored per validation step (default: ~4M scores per block).
    progress : called with one line per validation (epoch, Recall@10, seconds), e.g. an
        asset's ``context.log.info``.

    Returns
    -------
    BPRResult
    """
    interactions = sp.csr_matrix(interactions)
    n_users, n_playlists = interactions.shape
    rows_per_step = config.batch_size * (max(1, ROWS_PER_FUSED_STEP // config.batch_size)
                                         if config.optimizer == "sgd" else 1)
    interaction_set = InteractionSet.from_csr(interactions)
    if config.negatives == "seed_leaky":
        if triplets is None:
            raise ValueError('negatives="seed_leaky" trains on fixed triplets: pass them as `triplets`')
        data = validate_triplets(triplets, n_users, n_playlists)
        dataset: torch.utils.data.IterableDataset = ShuffledTripletBatches(data, rows_per_step, config.seed)
        per_epoch = int(data.shape[0])
    else:
        if triplets is not None:
            raise ValueError(f"negatives={config.negatives!r} draws its own negatives every epoch; "
                             "fixed triplets are only for 'seed_leaky'")
        users, playlists = _positives(interactions)
        dataset = EpochTriplets(interaction_set, users, playlists, config, rows_per_step)
        per_epoch = dataset.triplets_per_epoch
    if validation is not None and validation.users.size == 0:
        validation = None
    module = BPRModule(n_users, n_playlists, config, n_triplets=per_epoch, interactions=interaction_set,
                       validation=validation)
    saver = BestWeightsCheckpoint(checkpoint)
    callbacks: list[pl.Callback] = [saver]
    if progress is not None:
        callbacks.append(ProgressLog(progress, "bpr"))
    val_loader = None
    if validation is not None:
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val_recall@10", mode="max", patience=config.patience))
        block = val_block_users or max(1, (1 << 22) // max(n_playlists, 1))
        val_loader = torch.utils.data.DataLoader(ValidationBlocks(validation, block), batch_size=None)
    train_loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=1, max_epochs=config.max_epochs, callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=config.val_every,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*treespec.*")
        warnings.filterwarnings("ignore", message=".*returned `None`.*")
        warnings.filterwarnings("ignore", message=".*`configure_optimizers`.*")
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    seconds = time.perf_counter() - started
    compiled = isinstance(module._fused, NativeBPRStep)
    return BPRResult(
        best_val_recall=saver.best if saver.best_epoch >= 0 else float("nan"),
        best_epoch=saver.best_epoch,
        epochs_run=int(trainer.current_epoch),
        triplets_per_second=module.triplets_seen / max(module.train_seconds, 1e-9),
        train_seconds=seconds,
        device=module.trained_on,
        checkpoint=str(checkpoint),
        history=module.history,
        compiled_update=compiled,
        compile_seconds=module.kernel_seconds if compiled else 0.0,
        leak_free=config.leak_free,
    )


@torch.no_grad()
def score_users(model: BPRNet | BPRModule, user_ids: np.ndarray, block_size: int = 4096) -> np.ndarray:
    """float32 (len(user_ids), n_playlists): every playlist's score for each user, computed
    ``block_size`` users at a time on the model's device."""
    net = model.net if isinstance(model, BPRModule) else model
    device = net.users.weight.device
    users = torch.as_tensor(np.asarray(user_ids, dtype=np.int64))
    out = np.empty((users.shape[0], net.n_playlists), np.float32)
    for start in range(0, users.shape[0], block_size):
        out[start : start + block_size] = net.score_users(users[start : start + block_size].to(device)).cpu().numpy()
    return out


@torch.no_grad()
def score_candidates(model: BPRNet | BPRModule, users: np.ndarray, candidates: np.ndarray,
                     chunk_rows: int = 4096) -> np.ndarray:
    """float32 (B, n): scores of candidates (B, n) for users (B,)."""
    net = model.net if isinstance(model, BPRModule) else model
    device = net.users.weight.device
    users_t = torch.as_tensor(np.asarray(users, dtype=np.int64))
    cands_t = torch.as_tensor(np.asarray(candidates, dtype=np.int64))
    out = np.empty(tuple(cands_t.shape), np.float32)
    for start in range(0, users_t.shape[0], chunk_rows):
        stop = start + chunk_rows
        out[start:stop] = net.score(users_t[start:stop].to(device), cands_t[start:stop].to(device)).cpu().numpy()
    return out
