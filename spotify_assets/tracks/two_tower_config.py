"""The two-tower model's training settings, apart from the model so that reading or
validating them (the ``two_tower_model`` run config, the Dagster definitions) needs no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TwoTowerConfig:
    """Training settings (defaults sized for the committed sample on 2 CPU cores). The one
    source of the defaults: the ``two_tower_model`` asset's run config and
    ``benchmarks.continuation`` take theirs from here.

    dim : query / track vector size; hidden : width of the two MLPs.
    name_buckets : rows of the hashed name n-gram table.
    batch_size : examples per step; positives_per_example : held-out tracks each example must
        find (each one competes with every other candidate of the step: in-batch negatives);
    uniform_negatives : extra negatives per step, uniform over the vocabulary.
    max_epochs, patience : epochs at most; epochs without a better val NDCG before stopping.
    examples_per_playlist : rounds over the training playlists per epoch.
    context_sizes : context sizes drawn uniformly per example (capped at length - 1).
    random_context_share : share of examples whose context is random positions.
    title_dropout : share of examples with context whose name is hidden.
    lr : Adam step of the dense layers; sparse_lr : row-wise Adagrad step of the embedding tables.
    lr_decay : both steps are multiplied by it after every epoch (1 = constant).
    init_std : normal initialisation of the embedding tables.
    cpu_threads : torch threads while training on CPU (0 = leave torch's setting). One by
        default: the kernels are small, and on the shared 2-core machine (load ~6) two
        threads made a step ~10x slower than one.
    seed : initialisation and every sampled quantity.
    """

    dim: int = 64
    hidden: int = 128
    name_buckets: int = 1 << 15
    batch_size: int = 256
    positives_per_example: int = 8
    uniform_negatives: int = 1024
    max_epochs: int = 12
    patience: int = 2
    examples_per_playlist: int = 4
    context_sizes: tuple[int, ...] = (0, 1, 5, 10, 25, 100)
    random_context_share: float = 0.2
    title_dropout: float = 0.3
    lr: float = 2e-3
    sparse_lr: float = 0.02
    lr_decay: float = 1.0
    init_std: float = 0.05
    cpu_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "name_buckets", "batch_size", "positives_per_example", "max_epochs",
                     "patience", "examples_per_playlist"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.uniform_negatives < 0 or self.cpu_threads < 0:
            raise ValueError("uniform_negatives and cpu_threads must be >= 0")
        if not self.context_sizes or min(self.context_sizes) < 0:
            raise ValueError("context_sizes must be non-empty and >= 0")
        for name in ("random_context_share", "title_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.lr <= 0 or self.sparse_lr <= 0 or self.init_std <= 0:
            raise ValueError("lr, sparse_lr and init_std must be > 0")
        if not 0 < self.lr_decay <= 1:
            raise ValueError("lr_decay must be in (0, 1]")


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------
