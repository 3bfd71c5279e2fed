"""Track embeddings from playlist sequences: item2vec (skip-gram with negative sampling, PyTorch)
and a PPMI + truncated SVD peer (scipy). No Dagster imports.

Sequences are ragged arrays: ``indptr`` int64 (n_seq + 1,) and ``tokens`` int64 (nnz,), the
tokens of sequence ``s`` being ``tokens[indptr[s]:indptr[s + 1]]`` in playlist order. Tokens are
*vocabulary* indices 0..V-1 (see :func:`build_vocabulary`), not raw track ids.

item2vec (Barkan & Koenigstein, 2016) is word2vec's skip-gram over playlists: each track
predicts its neighbours within a (randomly shrunk) window; ``negatives`` noise tracks per pair
come from the unigram distribution raised to ``ns_exponent``; frequent tracks are subsampled.
Training is a fused, closed-form SGD on minibatches of pairs (no autograd, no per-token
Python): the gradient of ``-log σ(w·h⁺) - Σ log σ(-w·h⁻)`` is applied with ``index_add_``.
Pairs are generated per epoch with one vectorized pass per window offset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "Item2VecConfig",
    "Item2VecResult",
    "Vocabulary",
    "build_vocabulary",
    "cooccurrence_matrix",
    "l2_normalize",
    "pick_device",
    "ppmi_svd",
    "randomized_svd",
    "skipgram_pairs",
    "skipgram_pairs_reference",
    "subsample_keep",
    "train_item2vec",
]


def pick_device(accelerator: str = "auto") -> torch.device:
    """``"auto"``: CUDA when ``torch.cuda.is_available()``, else CPU; ``"cpu"``; ``"gpu"``/``"cuda"``."""
    accelerator = accelerator.lower()
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"accelerator={accelerator!r} but torch sees no CUDA device")
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise ValueError(f"accelerator must be 'auto', 'cpu', 'gpu' or 'cuda', got {accelerator!r}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 (n, d) rows scaled to unit L2 norm (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@dataclass(frozen=True)
class Vocabulary:
    """Tracks kept for training (at least ``min_count`` occurrences).

    Attributes
    ----------
    track_ids : int64 (V,) kept track ids, ascending; row ``i`` of an embedding is track ``track_ids[i]``.
    counts : int64 (V,) occurrences of each kept track.
    index : int64 (n_tracks,) vocabulary row of each track id, -1 for dropped tracks.
    dropped_tracks : tracks that occur but fewer than ``min_count`` times.
    dropped_tokens : occurrences of those tracks.
    """

    track_ids: np.ndarray
    counts: np.ndarray
    index: np.ndarray
    dropped_tracks: int
    dropped_tokens: int

    @property
    def size(self) -> int:
        return int(self.track_ids.size)

    def encode(self, track_ids: np.ndarray) -> np.ndarray:
        """int64 vocabulary rows of ``track_ids`` (any shape; -1 for dropped or negative ids)."""
        track_ids = np.asarray(track_ids, dtype=np.int64)
        out = np.full(track_ids.shape, -1, np.int64)
        ok = (track_ids >= 0) & (track_ids < self.index.size)
        out[ok] = self.index[track_ids[ok]]
        return out


def build_vocabulary(track_ids: np.ndarray, n_tracks: int, min_count: int = 1) -> Vocabulary:
    """Count ``track_ids`` (int, (nnz,), values in 0..n_tracks-1) and keep those seen ``min_count``+ times."""
    track_ids = np.asarray(track_ids, dtype=np.int64)
    if track_ids.size and (track_ids.min() < 0 or track_ids.max() >= n_tracks):
        raise ValueError(f"track ids must lie in 0..{n_tracks - 1}")
    counts = np.bincount(track_ids, minlength=n_tracks)
    keep = counts >= max(1, min_count)
    index = np.full(n_tracks, -1, np.int64)
    kept = np.flatnonzero(keep)
    index[kept] = np.arange(kept.size)
    dropped = (counts > 0) & ~keep
    return Vocabulary(kept.astype(np.int64), counts[kept].astype(np.int64), index,
                      int(dropped.sum()), int(counts[dropped].sum()))


def subsample_keep(tokens: np.ndarray, counts: np.ndarray, threshold: float,
                   rng: np.random.Generator) -> np.ndarray:
    """bool (nnz,): word2vec's frequent-token subsampling, one Bernoulli draw per token.

    A token of relative frequency ``f`` is kept with probability ``min(1, sqrt(t/f) + t/f)``
    (the word2vec C code), ``t = threshold``; ``threshold <= 0`` keeps everything.
    """
    if threshold <= 0:
        return np.ones(tokens.size, bool)
    freq = counts / max(1, counts.sum())
    ratio = threshold / np.maximum(freq, 1e-300)
    p_keep = np.minimum(1.0, np.sqrt(ratio) + ratio)
    return rng.random(tokens.size) < p_keep[tokens]


def _compact(indptr: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """indptr of the same sequences after dropping the tokens where ``keep`` is False."""
    kept_before = np.r_[0, np.cumsum(keep)]
    return kept_before[indptr].astype(np.int64)


def skipgram_pairs(indptr: np.ndarray, tokens: np.ndarray, window: int,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (center, context) pairs within ``window`` positions inside each sequence.

    Parameters
    ----------
    indptr : int64 (n_seq + 1,); tokens : int64 (nnz,).
    window : maximum distance between a center and its context.
    rng : when given, each center draws its own reach uniformly in 1..window (word2vec's
        dynamic window, which weights near neighbours more); None uses the full window.

    Returns
    -------
    centers, contexts : int64 (n_pairs,), both directions, grouped by offset then position
    (shuffle before training). One vectorized pass per offset; no loop over tokens.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    n = tokens.size
    seq = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    reach = rng.integers(1, window + 1, n) if rng is not None else np.full(n, window)
    centers, contexts = [], []
    for d in range(1, min(window, max(n - 1, 0)) + 1):
        same = seq[:-d] == seq[d:]
        forward = same & (reach[:-d] >= d)  # center i, context i + d
        backward = same & (reach[d:] >= d)  # center i + d, context i
        centers += [tokens[:-d][forward], tokens[d:][backward]]
        contexts += [tokens[d:][forward], tokens[:-d][backward]]
    if not centers:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centers), np.concatenate(contexts)


def skipgram_pairs_reference(indptr: np.ndarray, tokens: np.ndarray, window: int) -> set[tuple[int, int, int]]:
    """Slow pure-Python reference of :func:`skipgram_pairs` (full window): a set of
    (center position, context position, 1) triples, for tests."""
    out = set()
    for s in range(indptr.size - 1):
        for i in range(indptr[s], indptr[s + 1]):
            for j in range(max(indptr[s], i - window), min(indptr[s + 1], i + window + 1)):
                if j != i:
                    out.add((i, j, 1))
    return out


@dataclass(frozen=True)
class Item2VecConfig:
    """Skip-gram with negative sampling over playlists (defaults sized for the committed sample)."""

    dim: int = 32
    window: int = 5
    negatives: int = 5
    epochs: int = 5
    batch_size: int = 4096
    lr: float = 0.1
    """Initial row-wise Adagrad step, decayed linearly to ``lr * 1e-3`` over training."""
    subsample: float = 1e-3
    """word2vec's subsampling threshold ``t`` (0 disables)."""
    ns_exponent: float = 0.75
    chunk_tokens: int = 2_000_000
    """Tokens whose pairs are generated and shuffled together (bounds memory at bench scale)."""
    cpu_threads: int = 1
    """Torch threads on CPU while training (0 = leave torch's setting): minibatch kernels this
    small do not scale across threads, and extra threads stall on a busy machine."""
    seed: int = 0


@dataclass
class Item2VecResult:
    """vectors: float32 (V, dim) input embeddings (not normalized); history: per-epoch loss rows."""

    vectors: np.ndarray
    history: list[dict] = field(default_factory=list)
    pairs_trained: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_trained / max(self.seconds, 1e-9)


@contextmanager
def _torch_threads(threads: int, device: torch.device) -> Iterator[None]:
    """Temporarily set torch's intra-op threads for CPU work (restored afterwards)."""
    if device.type != "cpu" or threads <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_NOISE_TABLE = 1 << 22


def _noise_table(counts: np.ndarray, exponent: float) -> np.ndarray:
    """int64 (2**22,) table whose uniform draws follow ``counts ** exponent`` (word2vec's table)."""
    weight = counts.astype(np.float64) ** exponent
    cum = np.cumsum(weight) / weight.sum()
    return np.minimum(np.searchsorted(cum, (np.arange(_NOISE_TABLE) + 0.5) / _NOISE_TABLE), counts.size - 1)


def _sgns_grads(W: torch.Tensor, H: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form SGNS gradients of a minibatch.

    W, H : (V, d) input / output embeddings; centers, contexts : int64 (B,); noise : int64 (B, K).

    Returns
    -------
    grad_w : (B, d) for rows ``centers`` of W; grad_h : (B * (1 + K), d) for rows
    ``cat(contexts, noise.ravel())`` of H; loss : 0-d summed ``-log σ(w·h⁺) - Σ log σ(-w·h⁻)``.
    """
    wc = W[centers]  # (B, d)
    ho = H[contexts]  # (B, d)
    hn = H[noise]  # (B, K, d)
    s_pos = (wc * ho).sum(1)
    s_neg = torch.bmm(hn, wc.unsqueeze(2)).squeeze(2)  # (B, K)
    g_pos = torch.sigmoid(s_pos) - 1.0  # d/ds of -log σ(s)
    g_neg = torch.sigmoid(s_neg)  # d/ds of -log σ(-s)
    grad_w = g_pos.unsqueeze(1) * ho + torch.bmm(g_neg.unsqueeze(1), hn).squeeze(1)
    grad_h = torch.cat([g_pos.unsqueeze(1) * wc, (g_neg.unsqueeze(2) * wc.unsqueeze(1)).reshape(-1, wc.shape[1])])
    loss = -(torch.nn.functional.logsigmoid(s_pos).sum() + torch.nn.functional.logsigmoid(-s_neg).sum())
    return grad_w, grad_h, loss


def _rowwise_adagrad(M: torch.Tensor, acc: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, lr: float) -> None:
    """Row-wise Adagrad (as PyTorch-BigGraph): sum the minibatch's gradients per row, add
    each row's mean squared gradient to ``acc`` (V,), step ``lr / sqrt(acc)`` in place."""
    unique, inverse = torch.unique(rows, return_inverse=True)
    summed = torch.zeros(unique.numel(), M.shape[1], dtype=M.dtype, device=M.device).index_add_(0, inverse, grads)
    acc.index_add_(0, unique, (summed * summed).mean(1))
    M.index_add_(0, unique, summed * (-lr / torch.sqrt(acc[unique] + 1e-10)).unsqueeze(1))


def _sgns_step(W: torch.Tensor, H: torch.Tensor, acc_w: torch.Tensor, acc_h: torch.Tensor, centers: torch.Tensor,
               contexts: torch.Tensor, noise: torch.Tensor, lr: float) -> torch.Tensor:
    """One fused row-wise-Adagrad step on a minibatch (W, H, acc_* updated in place); returns the summed loss."""
    grad_w, grad_h, loss = _sgns_grads(W, H, centers, contexts, noise)
    _rowwise_adagrad(H, acc_h, torch.cat([contexts, noise.reshape(-1)]), grad_h, lr)
    _rowwise_adagrad(W, acc_w, centers, grad_w, lr)
    return loss


def _chunks(indptr: np.ndarray, chunk_tokens: int) -> list[tuple[int, int]]:
    """(first, last) sequence ranges of about ``chunk_tokens`` tokens each."""
    bounds = np.searchsorted(indptr, np.arange(0, indptr[-1], max(1, chunk_tokens)), side="right") - 1
    bounds = np.unique(np.r_[bounds, indptr.size - 1])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def train_item2vec(indptr: np.ndarray, tokens: np.ndarray, counts: np.ndarray, config: Item2VecConfig,
                   accelerator: str = "auto") -> Item2VecResult:
    """Train skip-gram item2vec on playlist sequences.

    Parameters
    ----------
    indptr : int64 (n_seq + 1,); tokens : int64 (nnz,) vocabulary rows 0..V-1.
    counts : int64 (V,) occurrences per vocabulary row (noise distribution and subsampling).
    config : hyper-parameters and the seed (initialisation, subsampling, windows, pair
        order and noise draws all derive from it: the same seed gives the same vectors on CPU).
    accelerator : "auto" (CUDA when available), "cpu" or "gpu".

    Returns
    -------
    :class:`Item2VecResult` with float32 (V, dim) input vectors.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n_vocab = counts.size
    if tokens.size and (tokens.min() < 0 or tokens.max() >= n_vocab):
        raise ValueError(f"tokens must be vocabulary rows in 0..{n_vocab - 1}")
    if indptr[-1] != tokens.size:
        raise ValueError("indptr[-1] must equal len(tokens)")
    device = pick_device(accelerator)
    seeds = np.random.SeedSequence([config.seed, 0x17E2])
    rng = np.random.default_rng(seeds.spawn(1)[0])
    torch_gen = torch.Generator().manual_seed(int(seeds.generate_state(1)[0]))
    W = ((torch.rand(n_vocab, config.dim, generator=torch_gen) - 0.5) / config.dim).to(device)
    H = torch.zeros(n_vocab, config.dim, device=device)
    acc_w = torch.zeros(n_vocab, device=device)
    acc_h = torch.zeros(n_vocab, device=device)
    table = torch.from_numpy(_noise_table(np.maximum(counts, 1), config.ns_exponent)).to(device)
    noise_gen = torch.Generator(device=device).manual_seed(int(seeds.generate_state(2)[1]))
    history, trained, started = [], 0, time.perf_counter()
    with torch.no_grad(), _torch_threads(config.cpu_threads, device):
        for epoch in range(config.epochs):
            loss_sum, epoch_pairs = torch.zeros((), device=device), 0
            keep = subsample_keep(tokens, counts, config.subsample, rng)
            ep_tokens, ep_indptr = tokens[keep], _compact(indptr, keep)
            chunks = _chunks(ep_indptr, config.chunk_tokens)
            for step, c in enumerate(rng.permutation(len(chunks))):
                first, last = chunks[c]
                lo, hi = ep_indptr[first], ep_indptr[last]
                centers, contexts = skipgram_pairs(ep_indptr[first:last + 1] - lo, ep_tokens[lo:hi], config.window, rng)
                order = rng.permutation(centers.size)
                centers_t = torch.from_numpy(centers[order]).to(device)
                contexts_t = torch.from_numpy(contexts[order]).to(device)
                for start in range(0, centers.size, config.batch_size):
                    c_b = centers_t[start:start + config.batch_size]
                    o_b = contexts_t[start:start + config.batch_size]
                    noise = table[torch.randint(_NOISE_TABLE, (c_b.numel(), config.negatives),
                                                generator=noise_gen, device=device)]
                    # linear decay over the whole run, as word2vec
                    progress = (epoch + (step + start / centers.size) / len(chunks)) / config.epochs
                    lr = config.lr * max(1e-3, 1.0 - progress)
                    loss_sum += _sgns_step(W, H, acc_w, acc_h, c_b, o_b, noise, lr)
                    epoch_pairs += c_b.numel()
            trained += epoch_pairs
            history.append({"epoch": epoch, "pairs": epoch_pairs,
                            "loss_per_pair": float(loss_sum) / max(epoch_pairs, 1)})
    vectors = W.cpu().numpy().astype(np.float32)
    return Item2VecResult(vectors, history, trained, time.perf_counter() - started, str(device))


def cooccurrence_matrix(indptr: np.ndarray, tokens: np.ndarray, n_vocab: int, window: int) -> sp.csr_matrix:
    """float32 (V, V) symmetric CSR: how often two tokens occur within ``window`` positions
    of each other inside a sequence (each ordered pair once per occurrence)."""
    centers, contexts = skipgram_pairs(indptr, tokens, window)
    matrix = sp.csr_matrix((np.ones(centers.size, np.float32), (centers, contexts)), shape=(n_vocab, n_vocab))
    matrix.sum_duplicates()
    return matrix


def ppmi_svd(cooccurrence: sp.csr_matrix, dim: int, alpha: float = 0.75, seed: int = 0) -> np.ndarray:
    """float32 (V, dim) embeddings ``U·sqrt(Σ)`` of the positive PMI matrix (Levy & Goldberg).

    cooccurrence : (V, V) non-negative CSR counts. ``alpha`` smooths the context distribution
    (``P(c) ∝ count(c)**alpha``), as SGNS's noise distribution does. The SVD is a
    seeded randomized one (:func:`randomized_svd`), so the same seed gives the same embedding.
    """
    counts = sp.csr_matrix(cooccurrence, dtype=np.float64)
    n = counts.shape[0]
    row = np.asarray(counts.sum(axis=1)).ravel()
    col = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    col_total = col.sum()
    rows = np.repeat(np.arange(n), np.diff(counts.indptr))
    # PMI(w, c) = log(P(w, c) / (P(w) P_alpha(c))) with P(w, c) = n_wc / N, P(w) = n_w / N
    pmi = np.log(counts.data * col_total / (row[rows] * col[counts.indices]))
    ppmi = sp.csr_matrix((np.maximum(pmi, 0.0), counts.indices, counts.indptr), shape=counts.shape)
    ppmi.eliminate_zeros()
    k = min(dim, n)
    if k < 1 or ppmi.nnz == 0:
        return np.zeros((n, dim), np.float32)
    u, s = randomized_svd(ppmi, k, seed=seed)
    # fix each component's sign (largest-magnitude entry positive) so the result is reproducible
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    vectors = (u * signs) * np.sqrt(s)
    if k < dim:
        vectors = np.pad(vectors, ((0, 0), (0, dim - k)))
    return vectors.astype(np.float32)


def randomized_svd(matrix: sp.spmatrix | np.ndarray, k: int, oversample: int = 10, power_iterations: int = 4,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` left singular vectors float64 (n, k) and values float64 (k,), descending,
    of ``matrix`` (n, m) by a seeded randomized range finder with power iterations (Halko,
    Martinsson & Tropp 2011): a handful of sparse products instead of ARPACK's many."""
    from threadpoolctl import threadpool_limits  # a dependency of implicit

    n, m = matrix.shape
    width = min(k + oversample, n, m)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5FD]))
    # skinny QRs gain nothing from BLAS threads, and OpenBLAS's spinning threads made them 5x
    # slower on a busy 2-core machine (measured: 6 s -> 1.2 s for the sample's 17k x 42)
    with threadpool_limits(1, "blas"):
        q, _ = np.linalg.qr(matrix @ rng.standard_normal((m, width)))
        for _ in range(power_iterations):
            q, _ = np.linalg.qr(matrix.T @ q)
            q, _ = np.linalg.qr(matrix @ q)
        small = np.asarray((matrix.T @ q).T)  # (width, m) = Qᵀ A
        u_small, s, _ = np.linalg.svd(small, full_matrices=False)
    return (q @ u_small)[:, :k], s[:k]
