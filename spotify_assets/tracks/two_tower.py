"""Two-tower retrieval for playlist continuation, in PyTorch Lightning. No Dagster imports.

Playlist tower (the query): the mean of the playlist name's hashed word / bigram /
character n-gram embeddings (:mod:`spotify_assets.tracks.names`), the mean of the context
tracks' embeddings and the mean of their artists' embeddings, plus three scalars (log
context size, has a name, has tracks); their sum plus an MLP of their concatenation gives
the query vector ``q`` (dim). A name alone, tracks alone or both are valid inputs.

Track tower (the candidate): the sum of the track's id embedding, its artist's, its
album's, a duration bucket (30 s steps up to 10 min) and a popularity bucket
(``floor(log2(count)) + 1`` of its occurrences in the training playlists), plus an MLP of
that sum, gives ``v_t``; a bias ``b_t`` (per track plus per popularity bucket) adds the
prior. The score is ``q · v_t + b_t``.

Loss: sampled softmax over the batch's positives (in-batch negatives) and ``uniform_negatives``
tracks drawn uniformly from the vocabulary, each logit corrected by ``-log Q(t)``, the
expected number of times ``t`` is among the candidates (``B·p(t) + S/V``, ``p`` = track
frequency in training rows) (Yi et al. 2019; Yang et al. 2020, mixed negative sampling), so
that the scores estimate the full softmax's log-probabilities; other rows' copies of a
row's positive are masked.

Examples (one epoch = ``examples_per_playlist`` rounds over every training playlist, as the
challenge's categories are built): a context size drawn from ``context_sizes`` (capped at
the playlist length - 1), the first tracks or (``random_context_share``) random positions
as context, the title dropped with ``title_dropout`` when there is context, and one of the
remaining tracks as the positive. The whole epoch is generated with numpy in a few
vectorized passes, permuted, and laid out as flat arrays, so a batch is a contiguous slice
(no per-sample ``__getitem__``, no collation).

Validation: after every epoch the val :class:`~spotify_assets.tracks.challenge.ChallengeSet`
is ranked exactly (top 500 of the whole vocabulary, seeds excluded) and its NDCG is the
early-stopping signal; the best weights are written atomically (temp file + rename) with
everything needed to rank (vocabulary, track features, name hashing settings, optionally
the serving catalogue) and are read back with ``torch.load(..., weights_only=True)``.

Reproducibility: parameters are initialised under a forked, seeded torch RNG and every
sampled quantity comes from ``numpy.random.SeedSequence([seed, epoch, ...])``; on CPU two
runs with the same seed give identical weights.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from spotify_assets.atomic import atomic_write
from spotify_assets.tracks.challenge import ChallengeSet, score_ranking
from spotify_assets.tracks.continuation import ragged_rows
from spotify_assets.tracks.item2vec import _torch_threads, pick_device
from spotify_assets.tracks.playlists import TrackFeatures
from spotify_assets.tracks.two_tower_config import TwoTowerConfig
from spotify_assets.tracks.names import CHAR_NGRAMS, name_feature_csr, normalize_name
from spotify_assets.train.progress import TrainClock

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrackFeatures",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerNet",
    "TwoTowerResult",
    "duration_buckets",
    "epoch_examples",
    "load_two_tower",
    "popularity_buckets",
    "save_two_tower",
    "train_two_tower",
]

CHECKPOINT_FORMAT = "spotify_assets.two_tower/1"
DURATION_STEP_MS = 30_000
DURATION_BUCKETS = 22  # 0 = unknown, 1..20 = 30 s steps, 21 = 10 min or longer
POPULARITY_BUCKETS = 32  # 0 = never in training, b = floor(log2(count)) + 1


def duration_buckets(duration_ms: np.ndarray) -> np.ndarray:
    """int64: 0 for unknown (<= 0), else 1 + 30-second steps, capped at ``DURATION_BUCKETS - 1``."""
    d = np.asarray(duration_ms, dtype=np.int64)
    return np.where(d > 0, np.minimum(1 + d // DURATION_STEP_MS, DURATION_BUCKETS - 1), 0).astype(np.int64)


def popularity_buckets(counts: np.ndarray) -> np.ndarray:
    """int64: 0 for count 0, else ``floor(log2(count)) + 1`` capped at ``POPULARITY_BUCKETS - 1``."""
    c = np.asarray(counts, dtype=np.int64)
    logs = np.floor(np.log2(np.maximum(c, 1))).astype(np.int64) + 1
    return np.where(c > 0, np.minimum(logs, POPULARITY_BUCKETS - 1), 0).astype(np.int64)


class TwoTowerNet(nn.Module):
    """Playlist tower and track tower over a vocabulary of ``n_vocab`` tracks.

    Buffers (saved with the weights): ``vocab_artist``, ``vocab_album`` int64 (V,) artist /
    album rows (0 = unknown, rows 1.. index the embedding tables); ``vocab_duration``,
    ``vocab_popularity`` int64 (V,) buckets; ``log_q`` float32 (V,) the sampled-softmax
    correction.
    """

    def __init__(self, n_vocab: int, n_artists: int, n_albums: int, dim: int, hidden: int, name_buckets: int,
                 init_std: float = 0.05, seed: int = 0):
        super().__init__()
        self.dim = dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.name_bag = nn.EmbeddingBag(name_buckets, dim, mode="mean", sparse=True)
            self.context_bag = nn.EmbeddingBag(n_vocab, dim, mode="mean", sparse=True)
            self.context_artist_bag = nn.EmbeddingBag(n_artists + 1, dim, mode="mean", sparse=True)
            self.query_mlp = nn.Sequential(nn.Linear(3 * dim + 3, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            self.track_id = nn.Embedding(n_vocab, dim, sparse=True)
            self.track_artist = nn.Embedding(n_artists + 1, dim, sparse=True)
            self.track_album = nn.Embedding(n_albums + 1, dim, sparse=True)
            self.track_duration = nn.Embedding(DURATION_BUCKETS, dim)
            self.track_popularity = nn.Embedding(POPULARITY_BUCKETS, dim)
            self.track_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            self.track_bias = nn.Embedding(n_vocab, 1, sparse=True)
            self.popularity_bias = nn.Embedding(POPULARITY_BUCKETS, 1)
            with torch.no_grad():
                for table in (self.name_bag, self.context_bag, self.context_artist_bag, self.track_id,
                              self.track_artist, self.track_album, self.track_duration, self.track_popularity):
                    table.weight.normal_(0.0, init_std)
                self.track_bias.weight.zero_()
                self.popularity_bias.weight.zero_()
        for name in ("vocab_artist", "vocab_album", "vocab_duration", "vocab_popularity"):
            self.register_buffer(name, torch.zeros(n_vocab, dtype=torch.int64))
        self.register_buffer("log_q", torch.zeros(n_vocab, dtype=torch.float32))

    @property
    def n_vocab(self) -> int:
        return self.track_id.num_embeddings

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [m.weight for m in self.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def queries(self, name_ids: torch.Tensor, name_offsets: torch.Tensor, context: torch.Tensor,
                context_offsets: torch.Tensor) -> torch.Tensor:
        """float32 (B, dim) query vectors.

        name_ids int64 (n,) with name_offsets int64 (B,) (bag starts; empty bag = no name);
        context int64 (m,) vocabulary rows with context_offsets int64 (B,).
        """
        names = self.name_bag(name_ids, name_offsets)
        tracks = self.context_bag(context, context_offsets)
        artists = self.context_artist_bag(self.vocab_artist[context], context_offsets)
        ends = torch.cat([context_offsets[1:], context_offsets.new_tensor([context.numel()])])
        n_context = (ends - context_offsets).to(names.dtype)
        name_ends = torch.cat([name_offsets[1:], name_offsets.new_tensor([name_ids.numel()])])
        has_name = ((name_ends - name_offsets) > 0).to(names.dtype)
        scalars = torch.stack([torch.log1p(n_context) / math.log(101.0), has_name, (n_context > 0).to(names.dtype)],
                              dim=1)
        summed = names + tracks + artists
        return summed + self.query_mlp(torch.cat([names, tracks, artists, scalars], dim=1))

    def tracks(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 (n, dim) track vectors, float32 (n,) biases) of vocabulary ``rows`` int64 (n,)."""
        popularity = self.vocab_popularity[rows]
        summed = (self.track_id(rows) + self.track_artist(self.vocab_artist[rows])
                  + self.track_album(self.vocab_album[rows]) + self.track_duration(self.vocab_duration[rows])
                  + self.track_popularity(popularity))
        vectors = summed + self.track_mlp(summed)
        return vectors, (self.track_bias(rows) + self.popularity_bias(popularity)).squeeze(1)

    @torch.no_grad()
    def all_tracks(self, block: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (V, dim) and biases (V,) of the whole vocabulary, ``block`` rows at a time."""
        device = self.track_id.weight.device
        parts = [self.tracks(torch.arange(s, min(s + block, self.n_vocab), device=device))
                 for s in range(0, self.n_vocab, block)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# --------------------------------------------------------------------------------------
# examples
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """An epoch of training examples laid out for contiguous batches.

    target : int64 (N, T) vocabulary rows of each example's positives (-1 pads).
    context_indptr : int64 (N + 1,); context : int64 (nnz,) vocabulary rows.
    name_indptr : int64 (N + 1,); name_ids : int64 (nnz,) hashed name rows (empty = no title).
    n_context : int64 (N,) context size of each example.
    """

    target: np.ndarray
    context_indptr: np.ndarray
    context: np.ndarray
    name_indptr: np.ndarray
    name_ids: np.ndarray
    n_context: np.ndarray

    @property
    def size(self) -> int:
        return int(self.target.shape[0])


def epoch_examples(indptr: np.ndarray, rows: np.ndarray, name_indptr: np.ndarray, name_ids: np.ndarray,
                   config: TwoTowerConfig, epoch: int) -> Examples:
    """The examples of epoch ``epoch`` (seeded by ``(config.seed, epoch)``), shuffled.

    Parameters
    ----------
    indptr : int64 (P + 1,) training playlists; rows : int64 (nnz,) their tracks as
        vocabulary rows, in playlist order.
    name_indptr : int64 (P + 1,); name_ids : int64 (m,) each playlist's hashed name rows.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch, 0x2707]))
    lengths = np.diff(indptr)
    n_rows = int(indptr[-1])
    seq = np.repeat(np.arange(lengths.size), lengths)
    position = np.arange(n_rows) - indptr[seq]
    playlists = np.flatnonzero(lengths >= 1)
    sizes = np.asarray(config.context_sizes, dtype=np.int64)
    name_len = np.diff(name_indptr)
    positives = config.positives_per_example
    parts = []
    flat_base = 0
    flats = []
    for _ in range(config.examples_per_playlist):
        k = np.minimum(sizes[rng.integers(0, sizes.size, lengths.size)], np.maximum(lengths - 1, 0))
        random_mode = rng.random(lengths.size) < config.random_context_share
        # rank of each row inside its playlist: its position, or a random order for random mode
        rank = position.copy()
        shuffled = np.flatnonzero(random_mode[seq])
        order = shuffled[np.argsort(seq[shuffled] + rng.random(shuffled.size), kind="stable")]
        rank[order] = np.arange(order.size) - np.searchsorted(seq[order], seq[order], side="left")
        in_context = rank < k[seq]
        # the positives: up to T distinct non-context rows per playlist, in a random order
        rest = np.flatnonzero(~in_context)
        drawn = rest[np.argsort(seq[rest] + rng.random(rest.size), kind="stable")]
        slot = np.arange(drawn.size) - np.searchsorted(seq[drawn], seq[drawn], side="left")
        chosen = slot < positives
        target = np.full((lengths.size, positives), -1, np.int64)
        target[seq[drawn[chosen]], slot[chosen]] = rows[drawn[chosen]]
        counts = np.bincount(seq[in_context], minlength=lengths.size)
        starts = flat_base + np.r_[0, np.cumsum(counts)[:-1]]
        flats.append(rows[in_context])  # grouped by playlist (rows are in playlist order)
        flat_base += int(counts.sum())
        hide = (rng.random(lengths.size) < config.title_dropout) & (k > 0)
        parts.append((playlists, target[playlists], ~hide[playlists], starts[playlists], counts[playlists]))
    playlist = np.concatenate([p[0] for p in parts])
    target = np.concatenate([p[1] for p in parts])
    has_title = np.concatenate([p[2] for p in parts])
    c_start = np.concatenate([p[3] for p in parts])
    c_count = np.concatenate([p[4] for p in parts])
    flat = np.concatenate(flats) if flats else np.zeros(0, np.int64)
    perm = rng.permutation(target.shape[0])
    playlist, target, has_title, c_start, c_count = (a[perm] for a in (playlist, target, has_title, c_start, c_count))
    n_count = name_len[playlist] * has_title
    return Examples(
        target=target.astype(np.int64),
        context_indptr=np.r_[0, np.cumsum(c_count)].astype(np.int64),
        context=flat[ragged_rows(c_start, c_count)].astype(np.int64),
        name_indptr=np.r_[0, np.cumsum(n_count)].astype(np.int64),
        name_ids=name_ids[ragged_rows(name_indptr[playlist], n_count)].astype(np.int64),
        n_context=c_count.astype(np.int64),
    )


def _bag_slice(indptr: np.ndarray, values: np.ndarray, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, bag offsets) of examples ``start:stop`` of a CSR layout, as tensors (no copy of values)."""
    lo, hi = int(indptr[start]), int(indptr[stop])
    return torch.from_numpy(values[lo:hi]), torch.from_numpy(indptr[start:stop] - lo)


class ExampleBatches(torch.utils.data.IterableDataset):
    """Batches of a fresh :func:`epoch_examples` per pass: dicts of tensors ``name_ids``,
    ``name_offsets``, ``context``, ``context_offsets``, ``target`` (B, T) and ``negatives``
    (S,) uniform vocabulary rows; slices of flat arrays, one per step."""

    def __init__(self, indptr: np.ndarray, rows: np.ndarray, name_indptr: np.ndarray, name_ids: np.ndarray,
                 n_vocab: int, config: TwoTowerConfig):
        super().__init__()
        self.indptr, self.rows = indptr, rows
        self.name_indptr, self.name_ids = name_indptr, name_ids
        self.n_vocab = n_vocab
        self.config = config
        self.passes = 0
        self.examples_seen = 0

    def __len__(self) -> int:
        n = int((np.diff(self.indptr) >= 1).sum()) * self.config.examples_per_playlist
        return math.ceil(n / self.config.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.passes
        self.passes += 1
        ex = epoch_examples(self.indptr, self.rows, self.name_indptr, self.name_ids, self.config, epoch)
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, epoch, 0x4E6]))
        size = self.config.batch_size
        for start in range(0, ex.size, size):
            stop = min(start + size, ex.size)
            name_ids, name_offsets = _bag_slice(ex.name_indptr, ex.name_ids, start, stop)
            context, context_offsets = _bag_slice(ex.context_indptr, ex.context, start, stop)
            self.examples_seen += stop - start
            yield {"name_ids": name_ids, "name_offsets": name_offsets, "context": context,
                   "context_offsets": context_offsets, "target": torch.from_numpy(ex.target[start:stop]),
                   "negatives": torch.from_numpy(rng.integers(0, self.n_vocab, self.config.uniform_negatives))}


# --------------------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------------------


@dataclass
class QueryTensors:
    """Encoded queries: name bags (hashed rows, bag starts), context bags (vocabulary rows,
    bag starts), and the seed rows to exclude as (query index, vocabulary row) pairs."""

    name_ids: torch.Tensor
    name_offsets: torch.Tensor
    context: torch.Tensor
    context_offsets: torch.Tensor
    exclude_query: torch.Tensor
    exclude_row: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.name_offsets.numel())

    def block(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Queries ``start:stop`` with bag offsets and exclusion indices re-based to 0."""
        n = self.size
        n_lo = int(self.name_offsets[start]) if start < n else self.name_ids.numel()
        n_hi = int(self.name_offsets[stop]) if stop < n else self.name_ids.numel()
        c_lo = int(self.context_offsets[start]) if start < n else self.context.numel()
        c_hi = int(self.context_offsets[stop]) if stop < n else self.context.numel()
        hit = (self.exclude_query >= start) & (self.exclude_query < stop)
        return {"name_ids": self.name_ids[n_lo:n_hi], "name_offsets": self.name_offsets[start:stop] - n_lo,
                "context": self.context[c_lo:c_hi], "context_offsets": self.context_offsets[start:stop] - c_lo,
                "exclude_query": self.exclude_query[hit] - start, "exclude_row": self.exclude_row[hit]}


class QueryBlocks(torch.utils.data.IterableDataset):
    """:meth:`QueryTensors.block` dicts of ``block`` queries each, in order (the val loader)."""

    def __init__(self, queries: QueryTensors, block: int):
        super().__init__()
        self.queries, self.block = queries, block

    def __len__(self) -> int:
        return math.ceil(self.queries.size / self.block)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, self.queries.size, self.block):
            yield self.queries.block(start, min(start + self.block, self.queries.size))


def encode_queries(names: Sequence[str], seed_rows: np.ndarray, name_buckets: int,
                   char_ngrams: Sequence[int] = CHAR_NGRAMS) -> QueryTensors:
    """Queries from names (str (Q,), "" = none) and seed vocabulary rows int (Q, S) (-1 = none)."""
    seed_rows = np.asarray(seed_rows, dtype=np.int64).reshape(len(names), -1)
    name_indptr, name_ids = name_feature_csr(names, name_buckets, char_ngrams)
    present = seed_rows >= 0
    q_idx, _ = np.nonzero(present)
    counts = present.sum(axis=1)
    return QueryTensors(
        torch.from_numpy(name_ids), torch.from_numpy(name_indptr[:-1].copy()),
        torch.from_numpy(seed_rows[present]), torch.from_numpy(np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)),
        torch.from_numpy(q_idx.astype(np.int64)), torch.from_numpy(seed_rows[present]),
    )


@torch.no_grad()
def rank_block(net: TwoTowerNet, block: dict[str, torch.Tensor], vectors: torch.Tensor, biases: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` vocabulary rows (int64 (b, k), -1 where fewer candidates) and scores
    of one :meth:`QueryTensors.block`, seeds excluded; ``vectors`` (V, dim), ``biases`` (V,)."""
    q = net.queries(block["name_ids"], block["name_offsets"], block["context"], block["context_offsets"])
    scores = torch.addmm(biases, q, vectors.T)
    scores[block["exclude_query"], block["exclude_row"]] = -torch.inf
    top_scores, top_rows = torch.topk(scores, min(k, vectors.shape[0]), dim=1)
    top_rows[~torch.isfinite(top_scores)] = -1
    if top_rows.shape[1] < k:
        pad = k - top_rows.shape[1]
        top_rows = nn.functional.pad(top_rows, (0, pad), value=-1)
        top_scores = nn.functional.pad(top_scores, (0, pad), value=-torch.inf)
    return top_rows, top_scores


@torch.no_grad()
def rank_queries(net: TwoTowerNet, queries: QueryTensors, k: int, vectors: torch.Tensor | None = None,
                 biases: torch.Tensor | None = None, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` vocabulary rows (int64 (Q, k), -1 past the vocabulary) and scores
    (float32 (Q, k)) per query, seeds excluded; queries go ``block`` at a time."""
    device = net.track_id.weight.device
    if vectors is None or biases is None:
        vectors, biases = net.all_tracks()
    out_rows = np.full((queries.size, k), -1, np.int64)
    out_scores = np.full((queries.size, k), -np.inf, np.float32)
    for start in range(0, queries.size, block):
        stop = min(start + block, queries.size)
        part = {name: t.to(device) for name, t in queries.block(start, stop).items()}
        rows, scores = rank_block(net, part, vectors, biases, k)
        out_rows[start:stop] = rows.cpu().numpy()
        out_scores[start:stop] = scores.cpu().numpy()
    return out_rows, out_scores


# --------------------------------------------------------------------------------------
# Lightning module
# --------------------------------------------------------------------------------------


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per embedding row (as PyTorch-BigGraph and DLRM train
    their tables) for parameters with *sparse* gradients: only the rows a batch touched are
    read and written. ``torch.optim.SparseAdam`` measured ~60 ms per step on the sample's
    tables (one thread) against a few ms for this update."""

    def __init__(self, params, lr: float = 0.05, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("RowWiseAdagrad needs sparse gradients (sparse=True embeddings)")
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
                acc = state["sum"]
                acc.index_add_(0, rows, values.pow(2).mean(dim=1))
                p.index_add_(0, rows, values * (-group["lr"] / (acc[rows] + group["eps"]).sqrt()).unsqueeze(1))
        return None


class TwoTowerModule(TrainClock, pl.LightningModule):
    """Lightning wrapper of :class:`TwoTowerNet`: sampled-softmax training with two
    optimizers (:class:`RowWiseAdagrad` for the embedding tables, Adam for the rest; manual
    optimization); validation ranks the val :class:`ChallengeSet` exactly (top 500 of the
    vocabulary) and logs its NDCG as ``val_ndcg``."""

    def __init__(self, net: TwoTowerNet, config: TwoTowerConfig, val: ChallengeSet | None = None,
                 vocab_track_ids: np.ndarray | None = None, track_artist: np.ndarray | None = None,
                 log: Callable[[str], None] | None = None):
        super().__init__()
        self.net = net
        self.config = config
        self.automatic_optimization = False
        self.val = val
        self.vocab_track_ids = vocab_track_ids
        self.track_artist = track_artist
        self.progress = log
        self.history: list[dict[str, float]] = []
        self.last_val: dict[str, float] = {}
        self._loss_sum = 0.0
        self._loss_rows = 0
        self._epoch_started = 0.0
        self._val_tracks: tuple[torch.Tensor, torch.Tensor] | None = None
        self._val_rows: list[np.ndarray] = []
        self.train_seconds = 0.0
        self.trained_on = "cpu"

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean sampled-softmax loss over a batch's positives (see the module docstring)."""
        net = self.net
        q = net.queries(batch["name_ids"], batch["name_offsets"], batch["context"], batch["context_offsets"])
        target = batch["target"]
        valid = target >= 0
        owner = torch.nonzero(valid)[:, 0]  # the example of each positive, in row-major order
        positives = target[valid]
        candidates = torch.cat([positives, batch["negatives"]])
        vectors, biases = net.tracks(candidates)
        logits = q @ vectors.T + (biases - net.log_q[candidates])[None, :]
        # a positive competes with every candidate except its own example's positives (and
        # copies of them among the other candidates: accidental hits)
        width = net.n_vocab + 1
        rows = torch.arange(q.shape[0], device=q.device)[:, None]
        own = torch.isin(rows * width + candidates[None, :], owner * width + positives)
        negatives = torch.logsumexp(logits.masked_fill(own, -torch.inf), dim=1)
        positive_logits = logits[owner, torch.arange(positives.numel(), device=q.device)]
        return nn.functional.softplus(negatives[owner] - positive_logits).mean()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        sparse, dense = self.optimizers()
        sparse.zero_grad()
        dense.zero_grad()
        loss = self.loss(batch)
        self.manual_backward(loss)
        sparse.step()
        dense.step()
        rows = int(batch["target"].shape[0])
        self._loss_sum += float(loss.detach()) * rows
        self._loss_rows += rows

    def configure_optimizers(self):
        return [RowWiseAdagrad(self.net.sparse_parameters(), lr=self.config.sparse_lr),
                torch.optim.Adam(self.net.dense_parameters(), lr=self.config.lr)]

    def on_train_start(self) -> None:
        self.trained_on = str(self.device)

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_rows = 0.0, 0
        self._start_train_clock()

    def on_validation_epoch_start(self) -> None:
        self._stop_train_clock()  # validation runs inside the train epoch: not training time
        self._val_tracks = self.net.all_tracks()
        self._val_rows = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        rows, _ = rank_block(self.net, batch, *self._val_tracks, 500)
        self._val_rows.append(rows.cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        self._val_tracks = None
        if not self._val_rows:
            return
        rows = np.concatenate(self._val_rows)
        ranked = np.where(rows >= 0, self.vocab_track_ids[np.maximum(rows, 0)], -1)
        scores = score_ranking(ranked, self.val, self.track_artist)
        self.last_val = {"val_ndcg": float(scores["ndcg"].mean()),
                         "val_r_precision": float(scores["r_precision"].mean())}
        self.log("val_ndcg", self.last_val["val_ndcg"])

    def on_train_epoch_end(self) -> None:
        self._stop_train_clock()
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group["lr"] *= self.config.lr_decay
        row = {"epoch": self.current_epoch, "train_loss": self._loss_sum / max(self._loss_rows, 1),
               "examples": self._loss_rows, **self.last_val}
        self.history.append(row)
        if self.progress is not None:
            shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            self.progress(f"two-tower {shown}")


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def save_two_tower(path: Path | str, net: TwoTowerNet, hparams: dict[str, Any], vocab_track_ids: np.ndarray,
                   epoch: int, val_ndcg: float, catalogue: dict[str, list[str]] | None = None) -> Path:
    """Atomically write the model (temp file in the same folder, then ``os.replace``):
    ``{"format", "state_dict", "hparams", "vocab_track_ids", "epoch", "val_ndcg", "catalogue"}``,
    only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.
    ``catalogue`` ({"track_uri", "track_name", "artist_name"}: lists aligned with the
    vocabulary) lets a server answer with names without the warehouse."""
    path = Path(path)
    if catalogue is not None and any(len(v) != vocab_track_ids.size for v in catalogue.values()):
        raise ValueError("every catalogue column needs one entry per vocabulary track")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "hparams": {k: (list(v) if isinstance(v, tuple) else v) for k, v in hparams.items()},
        "vocab_track_ids": torch.from_numpy(np.asarray(vocab_track_ids, dtype=np.int64).copy()),
        "epoch": int(epoch),
        "val_ndcg": float(val_ndcg),
        "catalogue": catalogue,
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


class TwoTowerModel:
    """A trained model ready to rank: the network (eval mode), its vocabulary and settings.

    vocab_track_ids : int64 (V,) dense track id of each vocabulary row;
    catalogue : optional names aligned with the vocabulary (see :func:`save_two_tower`).
    """

    def __init__(self, net: TwoTowerNet, vocab_track_ids: np.ndarray, hparams: dict[str, Any], epoch: int = -1,
                 val_ndcg: float = float("nan"), catalogue: dict[str, list[str]] | None = None):
        self.net = net.eval()
        self.vocab_track_ids = np.asarray(vocab_track_ids, dtype=np.int64)
        self.hparams = dict(hparams)
        self.epoch = epoch
        self.val_ndcg = val_ndcg
        self.catalogue = catalogue
        self._row_of = np.full(int(self.vocab_track_ids.max(initial=-1)) + 1, -1, np.int64)
        self._row_of[self.vocab_track_ids] = np.arange(self.vocab_track_ids.size)
        self._tracks: tuple[torch.Tensor, torch.Tensor] | None = None
        self._uri_rows: dict[str, int] | None = None

    @property
    def name_buckets(self) -> int:
        return int(self.hparams["name_buckets"])

    def rows(self, track_ids: np.ndarray) -> np.ndarray:
        """int64 vocabulary rows of ``track_ids`` (any shape; -1 outside the vocabulary)."""
        ids = np.asarray(track_ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < self._row_of.size)
        return np.where(ok, self._row_of[np.where(ok, ids, 0)], -1)

    def uri_rows(self) -> dict[str, int]:
        """{track URI: vocabulary row} from the catalogue (built once)."""
        if self._uri_rows is None:
            uris = (self.catalogue or {}).get("track_uri", [])
            self._uri_rows = dict(zip(uris, range(len(uris))))
        return self._uri_rows

    def name_has_features(self, name: str) -> bool:
        """Whether ``name`` gives the name tower anything to read (letters or digits)."""
        return bool(normalize_name(name))

    def track_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every vocabulary track's (vector, bias), computed once."""
        if self._tracks is None:
            self._tracks = self.net.all_tracks()
        return self._tracks

    def rank(self, names: Sequence[str], seeds: np.ndarray, k: int = 500, block: int = 1024
             ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` track ids (int64 (Q, k), -1 = fewer candidates) and scores (float32)
        for playlists named ``names`` ("" = no title) with seed track ids ``seeds`` int
        (Q, S) (-1 = none; tracks outside the vocabulary are ignored); seeds never come back."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = encode_queries(list(names), self.rows(seeds), self.name_buckets,
                                 tuple(self.hparams.get("char_ngrams", CHAR_NGRAMS)))
        vectors, biases = self.track_vectors()
        rows, scores = rank_queries(self.net, queries, k, vectors, biases, block)
        return np.where(rows >= 0, self.vocab_track_ids[np.maximum(rows, 0)], -1), scores


def load_two_tower(path: Path | str, map_location: str | torch.device = "cpu") -> TwoTowerModel:
    """Read a :func:`save_two_tower` file with ``torch.load(..., weights_only=True)``."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    h = payload["hparams"]
    net = TwoTowerNet(int(h["n_vocab"]), int(h["n_artists"]), int(h["n_albums"]), int(h["dim"]), int(h["hidden"]),
                      int(h["name_buckets"]))
    net.load_state_dict(payload["state_dict"])
    return TwoTowerModel(net, payload["vocab_track_ids"].numpy(), h, int(payload["epoch"]), float(payload["val_ndcg"]),
                         payload.get("catalogue"))


class BestTwoTowerCheckpoint(pl.Callback):
    """Writes the weights after every validation that improves ``val_ndcg`` (the last
    epoch's weights when there is no val set), via :func:`save_two_tower`."""

    def __init__(self, path: Path | str, hparams: dict[str, Any], vocab_track_ids: np.ndarray,
                 catalogue: dict[str, list[str]] | None):
        self.path = Path(path)
        self.hparams = hparams
        self.vocab_track_ids = vocab_track_ids
        self.catalogue = catalogue
        self.best = -math.inf
        self.best_epoch = -1

    def on_validation_end(self, trainer: pl.Trainer, module: TwoTowerModule) -> None:
        value = module.last_val.get("val_ndcg", -math.inf)
        if not trainer.sanity_checking and value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            save_two_tower(self.path, module.net, self.hparams, self.vocab_track_ids, trainer.current_epoch, value,
                           self.catalogue)

    def on_train_end(self, trainer: pl.Trainer, module: TwoTowerModule) -> None:
        if self.best_epoch < 0:  # never validated: keep the final weights
            self.best_epoch = trainer.current_epoch - 1
            save_two_tower(self.path, module.net, self.hparams, self.vocab_track_ids, self.best_epoch, float("nan"),
                           self.catalogue)


# --------------------------------------------------------------------------------------
# training entry point
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoTowerResult:
    """What :func:`train_two_tower` reports: the best epoch and its val metrics, the
    per-epoch history, sizes, speed and where it trained."""

    checkpoint: str
    best_epoch: int
    best_val_ndcg: float
    epochs_run: int
    vocab_size: int
    train_playlists: int
    examples_per_second: float
    train_seconds: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)


def _dense_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows 1..n for the distinct ids >= 0 of ``ids`` (0 for negative ids) and n."""
    ids = np.asarray(ids, dtype=np.int64)
    distinct, inverse = np.unique(np.where(ids >= 0, ids, -1), return_inverse=True)
    offset = 1 if distinct.size and distinct[0] < 0 else 0
    rows = inverse - offset + 1
    return np.where(ids >= 0, rows, 0).astype(np.int64), int(distinct.size - offset)


def train_two_tower(indptr: np.ndarray, tracks: np.ndarray, names: Sequence[str], features: TrackFeatures,
                    config: TwoTowerConfig, checkpoint: Path | str,
                    val: tuple[ChallengeSet, Sequence[str]] | None = None, track_artist: np.ndarray | None = None,
                    catalogue: Callable[[np.ndarray], dict[str, list[str]]] | None = None,
                    accelerator: str = "auto", log: Callable[[str], None] | None = None) -> TwoTowerResult:
    """Train the two-tower model on training playlists; keep the best epoch by val NDCG.

    Parameters
    ----------
    indptr : int64 (P + 1,); tracks : int (nnz,) track ids of the *training* playlists in
        playlist order; names : (P,) their names.
    features : per-track artist, album and duration (:class:`TrackFeatures`).
    config : :class:`TwoTowerConfig`.
    checkpoint : where the best weights go (atomic writes; :func:`load_two_tower`).
    val : (val :class:`ChallengeSet` built on other playlists, names indexed like that set's
        playlists) for early stopping; None trains ``max_epochs`` and keeps the last epoch.
    track_artist : int64 (n_tracks,) artist per track for the val R-precision (default:
        ``features.artist``).
    catalogue : f(vocabulary track ids int64 (V,)) -> {"track_uri", "track_name",
        "artist_name"} stored in the checkpoint for serving.
    accelerator : "auto" (CUDA when torch sees one), "cpu" or "gpu".
    log : progress lines (one per epoch).

    The vocabulary is every track of the training playlists (rows in ascending track id).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    tracks = np.asarray(tracks, dtype=np.int64)
    if len(names) != indptr.size - 1:
        raise ValueError(f"{len(names)} names for {indptr.size - 1} playlists")
    if tracks.size == 0:
        raise ValueError("no training playlists with tracks")
    if tracks.min() < 0 or tracks.max() >= features.n_tracks:
        raise ValueError(f"track ids must lie in 0..{features.n_tracks - 1}")
    counts = np.bincount(tracks, minlength=features.n_tracks)
    vocab_track_ids = np.flatnonzero(counts > 0).astype(np.int64)
    row_of = np.full(features.n_tracks, -1, np.int64)
    row_of[vocab_track_ids] = np.arange(vocab_track_ids.size)
    artist_rows, n_artists = _dense_ids(features.artist[vocab_track_ids])
    album_rows, n_albums = _dense_ids(features.album[vocab_track_ids])
    n_vocab = int(vocab_track_ids.size)
    net = TwoTowerNet(n_vocab, n_artists, n_albums, config.dim, config.hidden, config.name_buckets,
                      config.init_std, config.seed)
    vocab_counts = counts[vocab_track_ids]
    # expected copies of each track among a step's candidates: its share of the positives
    # (about min(T, length) per example) plus its share of the uniform negatives
    per_example = float(np.minimum(np.diff(indptr), config.positives_per_example).mean())
    expected = (config.batch_size * per_example * vocab_counts / vocab_counts.sum()
                + config.uniform_negatives / n_vocab)
    with torch.no_grad():
        net.vocab_artist.copy_(torch.from_numpy(artist_rows))
        net.vocab_album.copy_(torch.from_numpy(album_rows))
        net.vocab_duration.copy_(torch.from_numpy(duration_buckets(features.duration_ms[vocab_track_ids])))
        net.vocab_popularity.copy_(torch.from_numpy(popularity_buckets(vocab_counts)))
        net.log_q.copy_(torch.from_numpy(np.log(expected).astype(np.float32)))
    hparams = {**asdict(config), "n_vocab": n_vocab, "n_artists": n_artists, "n_albums": n_albums,
               "char_ngrams": list(CHAR_NGRAMS)}
    name_indptr, name_ids = name_feature_csr(names, config.name_buckets)
    batches = ExampleBatches(indptr, row_of[tracks], name_indptr, name_ids, n_vocab, config)
    val_loader = None
    challenge = None
    if val is not None and val[0].size > 0:
        challenge, val_names = val
        seed_rows = np.where(challenge.seeds >= 0, row_of[np.maximum(challenge.seeds, 0)], -1)
        val_queries = encode_queries(challenge.names(val_names), seed_rows, config.name_buckets)
        val_loader = torch.utils.data.DataLoader(QueryBlocks(val_queries, 512), batch_size=None)
    artist_of = features.artist if track_artist is None else track_artist
    module = TwoTowerModule(net, config, challenge, vocab_track_ids, np.asarray(artist_of, dtype=np.int64), log)
    saver = BestTwoTowerCheckpoint(checkpoint, hparams, vocab_track_ids,
                                   catalogue(vocab_track_ids) if catalogue is not None else None)
    callbacks: list[pl.Callback] = [saver]
    if val_loader is not None:
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val_ndcg", mode="max", patience=config.patience))
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=config.max_epochs, callbacks=callbacks,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    device = pick_device(accelerator)
    started = time.perf_counter()
    with warnings.catch_warnings(), _torch_threads(config.cpu_threads, device):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        warnings.filterwarnings("ignore", message=".*treespec.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None),
                    val_dataloaders=val_loader)
    seconds = time.perf_counter() - started
    return TwoTowerResult(
        checkpoint=str(checkpoint),
        best_epoch=saver.best_epoch,
        best_val_ndcg=saver.best if val_loader is not None and saver.best > -math.inf else float("nan"),
        epochs_run=int(trainer.current_epoch),
        vocab_size=n_vocab,
        train_playlists=int(indptr.size - 1),
        examples_per_second=batches.examples_seen / max(module.train_seconds, 1e-9),
        train_seconds=seconds,
        device=module.trained_on,
        history=module.history,
    )
