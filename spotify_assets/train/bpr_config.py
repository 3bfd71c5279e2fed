"""BPR's training settings, apart from the model so that reading or validating them
(the ``bpr_sweep`` / ``bpr_model`` run config, the Dagster definitions) needs no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spotify_assets.train.negatives import NEGATIVE_MODES

Optimizer = Literal["sgd", "sparse_adam", "adam"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "sparse_adam", "adam")
CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[str, ...] = ("auto", "on", "off")
#: negative sampling modes: the three honest ones, then the original system's recipe
BPR_NEGATIVES: tuple[str, ...] = (*NEGATIVE_MODES, "seed_leaky")


@dataclass(frozen=True)
class BPRConfig:
    """Training settings (all read by :func:`spotify_assets.train.bpr.train_bpr`).

    dim : embedding size.
    lr : SGD step per triplet ("sgd") or the Adam learning rate.
    reg : L2 weight on the embedding rows of each triplet.
    batch_size : triplets per minibatch (one SGD / optimizer step). On CPU 2048 measured
        fastest (the working set stays in cache); on a GPU use 32768-65536. For "sgd" the
        loader hands Lightning about ``ROWS_PER_FUSED_STEP`` triplets per step as whole
        minibatches, so Lightning's per-step overhead does not count.
    max_epochs, patience : epochs at most; validations without a better val Recall@10 before
        stopping.
    optimizer : "sgd" | "sparse_adam" | "adam" (see the module docstring).
    seed : drives the initialisation, every epoch's permutation and every negative.
    init_std : standard deviation of the normal initialisation of the embeddings.
    compile : "auto" | "on" | "off": run the CPU "sgd" update in the C kernel built for this
        CPU (:class:`spotify_assets.train.bpr.NativeBPRStep`, see that module's docstring); "auto" and "on" both use it
        where it builds and fall back to the eager torch step where it does not ("on" warns);
        "off" = the eager torch step. GPUs always use the torch step.
    negatives : "uniform" | "popularity" | "hard" (re-drawn every epoch from the training
        interactions only) or "seed_leaky" (the original recipe's fixed triplets, which read
        held-out labels: reproduction only).
    negatives_per_positive : triplets per positive per epoch (each with its own negative).
    hard_candidates : uniform candidates per triplet that "hard" mining picks the best of.
    popularity_exponent : "popularity" weights ``(1 + count) ** exponent``.
    val_every : epochs between validations (early stopping counts validations).
    """

    dim: int = 128
    lr: float = 0.05
    reg: float = 1e-4
    batch_size: int = 2048
    max_epochs: int = 30
    optimizer: Optimizer = "sgd"
    seed: int = 0
    patience: int = 3
    init_std: float = 0.1
    compile: CompileMode = "auto"
    negatives: str = "uniform"
    negatives_per_positive: int = 1
    hard_candidates: int = 16
    popularity_exponent: float = 0.75
    val_every: int = 1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.negatives not in BPR_NEGATIVES:
            raise ValueError(f"negatives must be one of {BPR_NEGATIVES}, got {self.negatives!r}")
        for name in ("dim", "batch_size", "max_epochs", "patience", "negatives_per_positive", "hard_candidates",
                     "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.reg < 0 or self.init_std <= 0:
            raise ValueError("lr and init_std must be > 0 and reg >= 0")

    @property
    def leak_free(self) -> bool:
        """False for the original recipe, whose negatives read held-out labels."""
        return self.negatives != "seed_leaky"
