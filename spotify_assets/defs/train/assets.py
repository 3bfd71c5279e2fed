"""Models: Lightning BPR, exact user-KNN, popularity, ALS and the song-aware ranker.

Every model learns from the same input, ``training_interactions`` (train likes, feedback
likes, owned playlists), plus the song matrices; choices (sweeps, early stopping) read the
validation full ranking and never the test answers. Users without any interaction get
vectors folded in from their song neighbours. Each model writes a small summary
(``train/<model>.json``: train seconds, validation metrics, whether it is leak-free) that the
leaderboard reads.
"""

import json
import shutil
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import (
    ALS,
    BPR_CHECKPOINT,
    BPR_SWEEP_BEST,
    BPR_SWEEP_TRIALS,
    INTERACTIONS,
    LABELS,
    MODEL_SUMMARIES,
    NEIGHBORS,
    OWNERSHIP,
    PLAYLIST_SONG,
    POPULARITY,
    SONG_RANKER,
    SPLITS,
    USER_SONG,
    deps,
)
from spotify_assets.defs.split.assets import held_out_tasks, load_interactions
from spotify_assets.evaluate.tasks import RankingTask, evaluate_full, factor_scorer
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.train.baselines import als_sweep, popularity_scores
# torch and Lightning load in the steps that train (the step processes have them preloaded),
# not with the definitions: every CLI command, code server and daemon imports this module
from spotify_assets.train.bpr_config import BPR_NEGATIVES, COMPILE_MODES, BPRConfig
from spotify_assets.train.knn import Neighbors, fold_in, top_k_neighbors
from spotify_assets.train.song_scoring import FEATURES, SongSignals
from spotify_assets.resources import (
    DUCKDB_OP_TAGS,
    DUCKDB_POOL,
    ArtifactStore,
    DuckDBWarehouse,
    ExperimentTracker,
    PipelineSettings,
)
from spotify_assets.feedback import load_feedback_positives
from spotify_assets.split.feedback import feedback_triplets
from spotify_assets.split.sampling import sample_triplets

if TYPE_CHECKING:
    from spotify_assets.train.bpr import BPRResult

TRAIN_GROUP = "train"


def write_summary(artifacts: ArtifactStore, model: str, train_seconds: float, leak_free: bool = True,
                  **extra: object) -> None:
    """``train/<model>.json``: what the leaderboard shows beside the model's metrics."""
    with artifacts.writing(MODEL_SUMMARIES[model]) as tmp:
        tmp.write_text(json.dumps({"model": model, "train_seconds": round(float(train_seconds), 3),
                                   "leak_free": bool(leak_free), **extra}, indent=2, default=float))


def read_summary(artifacts: ArtifactStore, model: str) -> dict:
    """The summary :func:`write_summary` wrote ({} when the model never wrote one)."""
    if model not in MODEL_SUMMARIES or not artifacts.has(MODEL_SUMMARIES[model]):
        return {}
    return json.loads(artifacts.file(MODEL_SUMMARIES[model]).read_text())


def load_neighbors(artifacts: ArtifactStore) -> Neighbors:
    stored = artifacts.read(NEIGHBORS, "neighbors", "similarities")
    return Neighbors(stored["neighbors"], stored["similarities"])


class ValidationConfig(dg.Config):
    validation_users: int = Field(default=2000, ge=0)
    """Validation users (seeded sample) whose full ranking drives selection and early stopping; 0 = all."""


def _validation(artifacts: ArtifactStore, config: ValidationConfig, settings: PipelineSettings,
                interactions=None) -> RankingTask:
    val, _ = held_out_tasks(artifacts, interactions)
    return val.subset(config.validation_users, settings.seed)


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


# --------------------------------------------------------------------------------------
# BPR
# --------------------------------------------------------------------------------------


class _BPRTrainerConfig(ValidationConfig):
    """What bpr_model and bpr_sweep both pass to the trainer."""

    accelerator: str = "auto"
    """'auto' picks the GPU when one exists."""
    compile: str = "auto"
    """'auto' | 'on' | 'off': run the CPU SGD update (and hard mining) in the C kernel built for
    this CPU (cc -march=native, ~0.3 s once, cached); 'auto' and 'on' fall back to the torch step
    without a C compiler ('on' warns); 'off' = the torch step. GPUs use the torch step."""
    negatives: str = "hard"
    """'hard' (mined from the model's own ranking), 'uniform', 'popularity' (re-drawn every epoch
    from the training interactions only) or 'seed_leaky' (the original system's fixed triplets,
    which read held-out labels: reproduction only, marked leaky on the leaderboard)."""
    negatives_per_positive: int = Field(default=2, ge=1)
    """Triplets per training interaction per epoch."""
    hard_candidates: int = Field(default=16, ge=1)
    """Uniform candidates per triplet that 'hard' mining picks the best of."""
    batch_size: int = Field(default=2048, ge=1)
    """Triplets per SGD update; 2048 keeps the working set in cache on CPU (use 32k-64k on a GPU)."""
    max_epochs: int = Field(default=150, ge=1)
    patience: int = Field(default=3, ge=1)
    """Validations without a better validation Recall@10 before early stopping."""
    val_every: int = Field(default=10, ge=1)
    """Epochs between validations."""

    @field_validator("compile")
    @classmethod
    def _known_compile(cls, value: str) -> str:
        if value not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}")
        return value

    @field_validator("negatives")
    @classmethod
    def _known_negatives(cls, value: str) -> str:
        if value not in BPR_NEGATIVES:
            raise ValueError(f"negatives must be one of {BPR_NEGATIVES}")
        return value

    def bpr_config(self, seed: int, **values) -> BPRConfig:
        return BPRConfig(batch_size=self.batch_size, max_epochs=self.max_epochs, patience=self.patience,
                         seed=seed, compile=self.compile, negatives=self.negatives,
                         negatives_per_positive=self.negatives_per_positive, hard_candidates=self.hard_candidates,
                         val_every=self.val_every, **values)


class BPRTrainingConfig(_BPRTrainerConfig):
    use_sweep: bool = True
    """Take the best bpr_sweep trial (by validation Recall@10) as the model; False trains with the values below."""
    dim: int = Field(default=128, ge=1)
    """Embedding size."""
    lr: float = Field(default=0.05, gt=0)
    """Learning rate (SGD step size, or Adam's for sparse_adam)."""
    reg: float = Field(default=3e-3, ge=0)
    """L2 regularization on the embedding rows in a batch."""
    init_std: float = Field(default=0.01, gt=0)
    """Standard deviation of the initial embeddings."""
    optimizer: str = "sgd"
    """'sgd' (fused closed-form update) or 'sparse_adam'."""

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        if value not in ("sgd", "sparse_adam"):
            raise ValueError("optimizer must be 'sgd' or 'sparse_adam'")
        return value


class BPRSweepConfig(_BPRTrainerConfig):
    dims: list[int] = Field(default=[128], min_length=1)
    lrs: list[float] = Field(default=[0.05, 0.1], min_length=1)
    regs: list[float] = Field(default=[3e-3], min_length=1)
    init_stds: list[float] = Field(default=[0.01], min_length=1)
    """Initial scales tried (small starts converge in fewer epochs here)."""


def _seed_triplets(artifacts: ArtifactStore, n_playlists: int, seed: int) -> np.ndarray:
    """The original system's triplets (2 negatives from the label score's hard pool + 2 uniform
    over playlists not liked in ANY split, per train positive, plus feedback triplets): they
    read held-out labels, which is why ``negatives='seed_leaky'`` is marked leaky."""
    labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists", "hard_indptr", "hard_playlists")
    split = artifacts.read(SPLITS, "split")["split"]
    owner = artifacts.read(OWNERSHIP, "owner")["owner"]
    sample = sample_triplets(labels["liked_indptr"], labels["liked_playlists"], split, labels["hard_indptr"],
                             labels["hard_playlists"], owner, n_playlists, seed)
    feedback = load_feedback_positives(artifacts)
    parts = [sample.triplets]
    if feedback is not None:
        parts.append(feedback_triplets(feedback["users"], feedback["playlists"], feedback["negative_indptr"],
                                       feedback["negatives"], 4))
    return np.concatenate(parts)


def _train(artifacts: ArtifactStore, interactions, config: BPRConfig, path, validation: RankingTask,
           accelerator: str, progress=None) -> "BPRResult":
    from spotify_assets.train.bpr import train_bpr

    triplets = _seed_triplets(artifacts, interactions.shape[1], config.seed) if not config.leak_free else None
    return train_bpr(interactions, config, path, validation=validation, accelerator=accelerator, triplets=triplets,
                     progress=progress)


def _history_table(history: list[dict]) -> str:
    return markdown_table([_rounded(row) for row in history])


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch", "duckdb"},
          deps=deps(INTERACTIONS, LABELS, SPLITS), op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def bpr_sweep(context: dg.AssetExecutionContext, config: BPRSweepConfig, artifacts: ArtifactStore,
              warehouse: DuckDBWarehouse, tracker: ExperimentTracker, settings: PipelineSettings) -> dg.MaterializeResult:
    """A grid over dim x lr x reg x initial scale: every trial trains on the same interactions
    with per-epoch negatives, early-stops on validation Recall@10, and is recorded in the
    warehouse (``bpr_sweep_trials``) and in wandb; the best trial is the BPR model."""
    from spotify_assets.train.bpr import read_checkpoint

    interactions = load_interactions(artifacts)
    validation = _validation(artifacts, config, settings, interactions)
    full_validation, _ = held_out_tasks(artifacts, interactions)
    trials = []
    grid = [(d, lr, reg, init) for d in config.dims for lr in config.lrs for reg in config.regs for init in config.init_stds]
    for number, (dim, lr, reg, init_std) in enumerate(grid):
        trial_config = config.bpr_config(settings.seed, dim=dim, lr=lr, reg=reg, init_std=init_std)
        name = f"bpr-sweep-d{dim}-lr{lr}-reg{reg}-init{init_std}"
        piece = f"{name}.pt"
        with tracker.run(name, asdict(trial_config), group="bpr_sweep") as run:
            context.log.info(f"sweep trial {number + 1}/{len(grid)}: {name}")
            result = _train(artifacts, interactions, trial_config, artifacts.file(BPR_SWEEP_TRIALS, piece), validation,
                            config.accelerator, progress=context.log.info)
            artifacts.publish(*BPR_SWEEP_TRIALS.piece(piece))
            for row in result.history:
                run.log(row)
            run.summary(best_val_recall=result.best_val_recall, triplets_per_second=result.triplets_per_second)
            location = run.location
        # the same metric on every validation user: shows the sampled users choose like all of them
        net = read_checkpoint(artifacts.file(BPR_SWEEP_TRIALS, piece)).net
        everyone = evaluate_full(factor_scorer("bpr", net.user_embeddings(), net.playlist_embeddings(),
                                               net.playlist_bias()), full_validation)["all"]
        trials.append({"trial": number, "dim": dim, "lr": lr, "reg": reg, "init_std": init_std,
                       "negatives": trial_config.negatives, "val_recall@10": float(result.best_val_recall),
                       "val_recall@10_all_users": everyone["recall@10"], "val_ndcg@10_all_users": everyone["ndcg@10"],
                       "best_epoch": result.best_epoch, "epochs": result.epochs_run,
                       "train_seconds": round(result.train_seconds, 2),
                       "triplets_per_second": round(result.triplets_per_second), "wandb": location,
                       "checkpoint": piece})
        context.log.info(f"trial {name}: val Recall@10 {result.best_val_recall:.4f} (all val users "
                         f"{everyone['recall@10']:.4f}) at epoch {result.best_epoch}, {result.train_seconds:.1f}s")
    scored = [t for t in trials if np.isfinite(t["val_recall@10"])]
    best = max(scored, key=lambda t: t["val_recall@10"]) if scored else trials[0]
    best_all = max(trials, key=lambda t: t["val_recall@10_all_users"])
    keys = ("dim", "lr", "reg", "init_std", "negatives", "val_recall@10", "best_epoch", "train_seconds", "checkpoint")
    with artifacts.writing(BPR_SWEEP_BEST) as tmp:
        tmp.write_text(json.dumps({k: best[k] for k in keys}))
    with warehouse.connect() as con:
        replace_tables(con, {"bpr_sweep_trials": pa.Table.from_pylist(trials)})
        meta = table_metadata(con, "bpr_sweep_trials")
    return dg.MaterializeResult(metadata={
        **meta,
        "trials": dg.MetadataValue.md(markdown_table([_rounded({k: v for k, v in t.items() if k != "checkpoint"})
                                                      for t in trials])),
        "best": dg.MetadataValue.json(_rounded({k: best[k] for k in keys if k != "checkpoint"})),
        "validation_users": int(validation.users.size),
        "sampled_users_pick_the_same_trial": best["trial"] == best_all["trial"],
    })


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch"},
          deps=deps(INTERACTIONS, LABELS, SPLITS, BPR_SWEEP_BEST, NEIGHBORS))
def bpr_model(context: dg.AssetExecutionContext, config: BPRTrainingConfig, artifacts: ArtifactStore,
              tracker: ExperimentTracker, settings: PipelineSettings) -> dg.MaterializeResult:
    """BPR (user/playlist embeddings + playlist bias) trained with PyTorch Lightning on the
    training interactions, negatives re-drawn every epoch, early-stopped on validation
    Recall@10. With ``use_sweep`` the sweep's best trial is the model (same data, seed and
    settings: training it again would give the same weights). Users without interactions get
    vectors folded in from their song neighbours. Checkpoint written atomically."""
    import torch

    from spotify_assets.train.bpr import read_checkpoint, save_checkpoint

    interactions = load_interactions(artifacts)
    started = time.perf_counter()
    if config.use_sweep and artifacts.has(BPR_SWEEP_BEST):
        best = json.loads(artifacts.file(BPR_SWEEP_BEST).read_text())
        bpr_config = replace(config.bpr_config(settings.seed, dim=int(best["dim"]), lr=float(best["lr"]),
                                               reg=float(best["reg"]), init_std=float(best["init_std"])),
                             negatives=best["negatives"])
        with artifacts.writing(BPR_CHECKPOINT) as tmp:
            shutil.copyfile(artifacts.file(BPR_SWEEP_TRIALS, best["checkpoint"]), tmp)
        source = f"bpr_sweep best trial (val Recall@10 {best['val_recall@10']:.4f})"
        history, device, epochs, triplets_per_second = [], "from the sweep", int(best["best_epoch"]), None
        train_seconds, leak_free = float(best["train_seconds"]), bpr_config.leak_free
        location = None
    else:
        bpr_config = config.bpr_config(settings.seed, dim=config.dim, lr=config.lr, reg=config.reg,
                                       init_std=config.init_std, optimizer=config.optimizer)
        validation = _validation(artifacts, config, settings, interactions)
        with tracker.run("bpr_model", asdict(bpr_config), group="bpr_model") as run:
            result = _train(artifacts, interactions, bpr_config, artifacts.file(BPR_CHECKPOINT), validation,
                            config.accelerator, progress=context.log.info)
            for row in result.history:
                run.log(row)
            run.summary(best_val_recall=result.best_val_recall, triplets_per_second=result.triplets_per_second)
            location = run.location
        source, history, device, epochs = "run config", result.history, result.device, result.best_epoch
        triplets_per_second, train_seconds, leak_free = result.triplets_per_second, result.train_seconds, result.leak_free
    checkpoint = read_checkpoint(artifacts.file(BPR_CHECKPOINT))
    has_history = np.diff(interactions.indptr) > 0
    folded = fold_in(checkpoint.net.user_embeddings(), has_history, load_neighbors(artifacts))
    with torch.no_grad():
        checkpoint.net.users.weight.copy_(torch.from_numpy(folded))
    save_checkpoint(artifacts.file(BPR_CHECKPOINT), checkpoint.net,
                    {**checkpoint.hparams, "folded_in_users": int((~has_history).sum())}, checkpoint.epoch,
                    checkpoint.val_recall)
    artifacts.publish(*BPR_CHECKPOINT.path)
    write_summary(artifacts, "bpr", train_seconds, leak_free, negatives=bpr_config.negatives,
                  val_recall=checkpoint.val_recall, config=asdict(bpr_config))
    context.log.info(f"BPR ({source}): validation Recall@10 {checkpoint.val_recall:.4f} at epoch {checkpoint.epoch}; "
                     f"{int((~has_history).sum())} users without interactions folded in from song neighbours")
    metadata = {
        "checkpoint": dg.MetadataValue.path(str(artifacts.file(BPR_CHECKPOINT))),
        "best_epoch": epochs,
        "best_val_recall@10": round(checkpoint.val_recall, 5) if np.isfinite(checkpoint.val_recall) else "no validation users",
        "leak_free": leak_free,
        "negatives": bpr_config.negatives,
        "interactions": int(interactions.nnz),
        "train_seconds": round(train_seconds, 2),
        "build_seconds": round(time.perf_counter() - started, 2),
        "device": device,
        "hyperparameters_from": source,
        "config": dg.MetadataValue.json(asdict(bpr_config)),
        "users_folded_in": int((~has_history).sum()),
        "peak_rss_mb": peak_rss_mb(),
    }
    if triplets_per_second is not None:
        metadata["triplets_per_second"] = round(triplets_per_second)
        metadata["val_history"] = dg.MetadataValue.md(_history_table(history))
        metadata["wandb_run"] = location
    return dg.MaterializeResult(metadata=metadata)


# --------------------------------------------------------------------------------------
# KNN, popularity, ALS
# --------------------------------------------------------------------------------------


class NeighborsConfig(dg.Config):
    k: int = Field(default=100, ge=1)
    """Neighbours kept per user."""
    block_size: int = Field(default=512, ge=1)
    """Users per similarity block (memory grows with it)."""


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"scipy"},
          deps=deps(USER_SONG))
def user_neighbors(context: dg.AssetExecutionContext, config: NeighborsConfig, artifacts: ArtifactStore
                   ) -> dg.MaterializeResult:
    """Exact top-k cosine neighbours per user on L2-normalized user-song rows (blocked sparse
    products). KNN recommends what the neighbours interacted with (training interactions)."""
    started = time.perf_counter()
    user_song = artifacts.read_csr(USER_SONG)
    result = top_k_neighbors(user_song, k=config.k, block_size=config.block_size)
    seconds = time.perf_counter() - started
    path = artifacts.write(NEIGHBORS, neighbors=result.neighbors, similarities=result.similarities)
    write_summary(artifacts, "knn", seconds, k=config.k)
    found = (result.neighbors >= 0).sum(axis=1)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "users": int(user_song.shape[0]),
        "k": config.k,
        "median_neighbors_found": float(np.median(found)) if found.size else 0.0,
        "seconds": round(seconds, 3),
        "users_per_second": round(user_song.shape[0] / max(seconds, 1e-9)),
        "peak_rss_mb": peak_rss_mb(),
    })


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"},
          deps=deps(INTERACTIONS))
def popularity_model(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    """Playlists ranked by how many users interacted with them (the same list for everyone)."""
    started = time.perf_counter()
    scores = popularity_scores(load_interactions(artifacts))
    path = artifacts.write(POPULARITY, scores=scores)
    write_summary(artifacts, "popularity", time.perf_counter() - started)
    top = np.argsort(-scores, kind="stable")[:10]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "playlists_with_an_interaction": int((scores > 0).sum()),
        "top_10": dg.MetadataValue.md(markdown_table([{"playlist_idx": int(j), "interactions": int(scores[j])}
                                                      for j in top])),
    })


class ALSConfig(ValidationConfig):
    factors: list[int] = Field(default=[32, 64], min_length=1)
    """Factor sizes tried."""
    alphas: list[float] = Field(default=[1.0, 10.0], min_length=1)
    """Confidence scales tried."""
    regularization: float = Field(default=0.05, ge=0)
    iterations: int = Field(default=15, ge=1)


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"},
          deps=deps(INTERACTIONS, LABELS, SPLITS, NEIGHBORS))
def als_model(context: dg.AssetExecutionContext, config: ALSConfig, artifacts: ArtifactStore,
              settings: PipelineSettings) -> dg.MaterializeResult:
    """ALS (``implicit``, BM25-weighted) on the training interactions with a factors x alpha
    sweep; the best by validation Recall@10 is kept, users without interactions folded in."""
    interactions = load_interactions(artifacts)
    validation = _validation(artifacts, config, settings, interactions)
    started = time.perf_counter()
    trials = als_sweep(interactions, lambda r: evaluate_full(factor_scorer("als", r.user_factors, r.item_factors),
                                                             validation)["all"],
                       factors=config.factors, alphas=config.alphas, regularization=config.regularization,
                       iterations=config.iterations, seed=settings.seed)
    best = max(trials, key=lambda t: (t.val_recall if np.isfinite(t.val_recall) else -1.0))
    has_history = np.diff(interactions.indptr) > 0
    users = fold_in(best.result.user_factors, has_history, load_neighbors(artifacts))
    path = artifacts.write(ALS, user_factors=users, item_factors=best.result.item_factors)
    write_summary(artifacts, "als", time.perf_counter() - started, factors=best.factors, alpha=best.alpha,
                  val_recall=best.val_recall, trials=len(trials))
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "best_factors": best.factors,
        "best_alpha": best.alpha,
        "best_val_recall@10": round(best.val_recall, 5),
        "validation_users": int(validation.users.size),
        "users_folded_in": int((~has_history).sum()),
        "sweep": dg.MetadataValue.md(markdown_table([t.row() for t in trials])),
        "seconds": round(time.perf_counter() - started, 2),
    })


# --------------------------------------------------------------------------------------
# the song-aware ranker
# --------------------------------------------------------------------------------------


class SongRankerTrainingConfig(ValidationConfig):
    hidden: int = Field(default=32, ge=1)
    """Width of the MLP's two hidden layers."""
    user_dim: int = Field(default=4, ge=0)
    """Per-user embedding size learned from the user's interactions (0 = features only)."""
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    negatives_per_positive: int = Field(default=8, ge=1)
    """Candidate negatives per positive per epoch."""
    users_per_batch: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=12, ge=1)
    patience: int = Field(default=3, ge=1)
    accelerator: str = "auto"
    """'auto' picks the GPU when one exists."""


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch", "scipy"},
          deps=deps(INTERACTIONS, LABELS, SPLITS, NEIGHBORS, USER_SONG, PLAYLIST_SONG))
def song_ranker(context: dg.AssetExecutionContext, config: SongRankerTrainingConfig, artifacts: ArtifactStore,
                settings: PipelineSettings) -> dg.MaterializeResult:
    """Song-aware two-stage model: candidates are the playlists sharing a song with the user,
    ranked by a Lightning-trained MLP over pair features (shared songs, sizes, popularity, KNN
    score) and a small per-user embedding; serves users without any interaction from their
    songs. Early-stopped on validation Recall@10; weights stored as numpy arrays."""
    from spotify_assets.train.song_ranker import SongRankerConfig, train_song_ranker

    interactions = load_interactions(artifacts)
    validation = _validation(artifacts, config, settings, interactions)
    signals = SongSignals.build(artifacts.read_csr(USER_SONG), artifacts.read_csr(PLAYLIST_SONG), interactions,
                                load_neighbors(artifacts))
    ranker_config = SongRankerConfig(hidden=config.hidden, user_dim=config.user_dim, lr=config.lr,
                                     weight_decay=config.weight_decay,
                                     negatives_per_positive=config.negatives_per_positive,
                                     users_per_batch=config.users_per_batch, max_epochs=config.max_epochs,
                                     patience=config.patience, seed=settings.seed)
    result = train_song_ranker(signals, ranker_config, validation, accelerator=config.accelerator,
                               progress=context.log.info)
    path = artifacts.write(SONG_RANKER, **result.weights)
    write_summary(artifacts, "song_ranker", result.train_seconds, val_recall=result.best_val_recall,
                  config=asdict(ranker_config))
    context.log.info(f"song ranker: validation Recall@10 {result.best_val_recall:.4f} at epoch {result.best_epoch} "
                     f"in {result.train_seconds:.1f}s on {result.device}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "features": dg.MetadataValue.md(markdown_table([{"feature": f} for f in FEATURES])),
        "best_epoch": result.best_epoch,
        "best_val_recall@10": round(result.best_val_recall, 5) if np.isfinite(result.best_val_recall) else "no validation users",
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.train_seconds, 2),
        "device": result.device,
        "config": dg.MetadataValue.json(asdict(ranker_config)),
        "val_history": dg.MetadataValue.md(_history_table(result.history)),
        "peak_rss_mb": peak_rss_mb(),
    })
