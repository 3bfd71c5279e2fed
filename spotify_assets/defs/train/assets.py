"""Models: Lightning BPR, exact user-KNN, popularity and ALS baselines."""

import json
import time
from dataclasses import asdict, replace

import dagster as dg
from pydantic import Field, field_validator
import pyarrow as pa
import numpy as np
import scipy.sparse as sp

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.metrics import sampled_metrics
from spotify_assets.models.baselines import factor_candidate_scores, popularity_scores, train_als
from spotify_assets.models.bpr import COMPILE_MODES, BPRConfig, train_bpr
from spotify_assets.models.knn import top_k_neighbors
from spotify_assets.matrices import load_csr
from spotify_assets.resources import (
    DUCKDB_OP_TAGS,
    DUCKDB_POOL,
    ArtifactStore,
    DuckDBWarehouse,
    ExperimentTracker,
    PipelineSettings,
)
from spotify_assets.feedback import load_feedback_positives
from spotify_assets.splits import TRAIN

TRAIN_GROUP = "train"
BPR_CHECKPOINT = ("train", "bpr.pt")
NEIGHBORS = ("train", "user_neighbors.npz")
POPULARITY = ("train", "popularity.npz")
ALS = ("train", "als.npz")
SWEEP_BEST = ("train", "bpr_sweep_best.json")


def train_positive_matrix(artifacts: ArtifactStore, with_owned: bool = False, with_feedback: bool = True
                          ) -> sp.csr_matrix:
    """(n_users, n_playlists) binary CSR of train positives: liked pairs in the train split plus
    the service's feedback likes (``feedback_positives``, held-out answers already removed), and
    owned playlists if asked."""
    labels = artifacts.load_arrays("label", "labels.npz")
    split = artifacts.load_arrays("split", "user_splits.npz")["split"]
    n_users = labels["n_scored"].size
    n_playlists = artifacts.load_arrays("prepare", "song_counts.npz")["p"].size
    users = np.repeat(np.arange(n_users), np.diff(labels["liked_indptr"]))
    train = split == TRAIN
    rows, cols = users[train], labels["liked_playlists"][train].astype(np.int64)
    if with_owned:
        owner = artifacts.load_arrays("split", "ownership.npz")["owner"]
        owned = np.flatnonzero(owner >= 0)
        rows, cols = np.concatenate([rows, owner[owned]]), np.concatenate([cols, owned])
    feedback = load_feedback_positives(artifacts) if with_feedback else None
    if feedback is not None and feedback["users"].size:
        if feedback["users"].max() >= n_users or feedback["playlists"].max() >= n_playlists:
            raise ValueError("feedback_positives indexes users/playlists beyond the current dictionaries: "
                             "it is older than the labels; materialize feedback_positives again")
        rows = np.concatenate([rows, feedback["users"]])
        cols = np.concatenate([cols, feedback["playlists"]])
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_playlists))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def val_batch(artifacts: ArtifactStore, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batches = artifacts.load_arrays("split", "eval_batches.npz")
    return batches[f"{split}_users"], batches[f"{split}_positives"], batches[f"{split}_negatives"]


class _BPRTrainerConfig(dg.Config):
    """What bpr_model and bpr_sweep both pass to the trainer."""

    accelerator: str = "auto"
    """'auto' picks the GPU when one exists."""
    compile: str = "auto"
    """'auto' | 'on' | 'off': compile the CPU SGD update with torch.compile (1.7-2x faster,
    ~20 s to compile); 'auto' compiles when epochs x triplets >= 50M."""

    @field_validator("compile")
    @classmethod
    def _known_compile(cls, value: str) -> str:
        if value not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}")
        return value


class BPRTrainingConfig(_BPRTrainerConfig):
    use_sweep: bool = True
    """Take dim, lr and reg from the best bpr_sweep trial (by val MRR); False uses the values below."""
    dim: int = Field(default=64, ge=1)
    """Embedding size."""
    lr: float = Field(default=0.05, gt=0)
    """Learning rate (SGD step size, or Adam's for sparse_adam)."""
    reg: float = Field(default=1e-4, ge=0)
    """L2 regularization on the embedding rows in a batch."""
    batch_size: int = Field(default=2048, ge=1)
    """Triplets per SGD update; 2048 keeps the working set in cache on CPU (use 32k-64k on a GPU)."""
    max_epochs: int = Field(default=40, ge=1)
    patience: int = Field(default=4, ge=1)
    """Epochs without a better val MRR before early stopping."""
    optimizer: str = "sgd"
    """'sgd' (fused closed-form update) or 'sparse_adam'."""

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        if value not in ("sgd", "sparse_adam"):
            raise ValueError("optimizer must be 'sgd' or 'sparse_adam'")
        return value


def _bpr_inputs(artifacts: ArtifactStore) -> tuple[np.ndarray, int, int]:
    triplets = artifacts.load_arrays("split", "bpr_triplets.npz")["triplets"]
    n_users = artifacts.load_arrays("label", "labels.npz")["n_scored"].size
    n_playlists = artifacts.load_arrays("prepare", "song_counts.npz")["p"].size
    return triplets, n_users, n_playlists


def _history_table(history: list[dict]) -> str:
    return markdown_table([{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in history])


class BPRSweepConfig(_BPRTrainerConfig):
    dims: list[int] = Field(default=[32, 64], min_length=1)
    lrs: list[float] = Field(default=[0.05, 0.1], min_length=1)
    regs: list[float] = Field(default=[1e-4], min_length=1)
    max_epochs: int = Field(default=15, ge=1)
    """Epochs per trial (early stopping still applies)."""
    batch_size: int = 2048
    """Triplets per SGD update; 2048 keeps the working set in cache on CPU (use 32k-64k on a GPU)."""


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch", "duckdb"}, deps=["bpr_triplets", "eval_batches"],
          op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def bpr_sweep(context: dg.AssetExecutionContext, config: BPRSweepConfig, artifacts: ArtifactStore,
              warehouse: DuckDBWarehouse, tracker: ExperimentTracker, settings: PipelineSettings) -> dg.MaterializeResult:
    """A grid over dim x lr x reg: every trial trained on the same triplets, scored by val
    MRR, recorded in the warehouse (``bpr_sweep_trials``) and in wandb; the best feeds bpr_model."""
    triplets, n_users, n_playlists = _bpr_inputs(artifacts)
    trials = []
    for dim in config.dims:
        for lr in config.lrs:
            for reg in config.regs:
                trial_config = BPRConfig(dim=dim, lr=lr, reg=reg, batch_size=config.batch_size,
                                         max_epochs=config.max_epochs, seed=settings.seed, compile=config.compile)
                name = f"bpr-sweep-d{dim}-lr{lr}-reg{reg}"
                with tracker.run(name, asdict(trial_config), group="bpr_sweep") as run:
                    result = train_bpr(triplets, n_users, n_playlists, trial_config,
                                       artifacts.path("train", "sweep", f"{name}.pt"), val_batch=val_batch(artifacts),
                                       accelerator=config.accelerator)
                    artifacts.publish("train", "sweep", f"{name}.pt")
                    for row in result.history:
                        run.log(row)
                    run.summary(best_val_mrr=result.best_val_mrr, triplets_per_second=result.triplets_per_second)
                    location = run.location
                trials.append({"trial": len(trials), "dim": dim, "lr": lr, "reg": reg,
                               "val_mrr": float(result.best_val_mrr), "epochs": result.epochs_run,
                               "triplets_per_second": round(result.triplets_per_second), "wandb": location})
                context.log.info(f"trial {name}: val MRR {result.best_val_mrr:.4f} in {result.epochs_run} epochs")
    scored = [t for t in trials if np.isfinite(t["val_mrr"])]
    best = max(scored, key=lambda t: t["val_mrr"]) if scored else trials[0]
    with artifacts.atomic_path(*SWEEP_BEST) as tmp:
        tmp.write_text(json.dumps({k: best[k] for k in ("dim", "lr", "reg", "val_mrr")}))
    with warehouse.connect() as con:
        replace_tables(con, {"bpr_sweep_trials": pa.Table.from_pylist(trials)})
        meta = table_metadata(con, "bpr_sweep_trials")
    return dg.MaterializeResult(metadata={
        **meta,
        "trials": dg.MetadataValue.md(markdown_table(trials)),
        "best": dg.MetadataValue.json({k: best[k] for k in ("dim", "lr", "reg", "val_mrr")}),
    })


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch"}, deps=["bpr_triplets", "eval_batches", "bpr_sweep"])
def bpr_model(context: dg.AssetExecutionContext, config: BPRTrainingConfig, artifacts: ArtifactStore,
              tracker: ExperimentTracker, settings: PipelineSettings) -> dg.MaterializeResult:
    """BPR (user/playlist embeddings + playlist bias) trained with PyTorch Lightning from the
    in-memory triplet tensor, early-stopped on validation MRR; checkpoint written atomically."""
    if config.optimizer not in ("sgd", "sparse_adam"):
        raise dg.Failure(f"optimizer must be 'sgd' or 'sparse_adam', got {config.optimizer!r}")
    triplets, n_users, n_playlists = _bpr_inputs(artifacts)
    bpr_config = BPRConfig(dim=config.dim, lr=config.lr, reg=config.reg, batch_size=config.batch_size,
                           max_epochs=config.max_epochs, optimizer=config.optimizer, seed=settings.seed,
                           patience=config.patience, compile=config.compile)
    source = "run config"
    best_path = artifacts.path(*SWEEP_BEST)
    if config.use_sweep and best_path.exists():
        best = json.loads(best_path.read_text())
        bpr_config = replace(bpr_config, dim=int(best["dim"]), lr=float(best["lr"]), reg=float(best["reg"]))
        source = f"bpr_sweep best (val MRR {best['val_mrr']:.4f})"
    with tracker.run("bpr_model", asdict(bpr_config), group="bpr_model") as run:
        result = train_bpr(triplets, n_users, n_playlists, bpr_config, artifacts.path(*BPR_CHECKPOINT),
                           val_batch=val_batch(artifacts), accelerator=config.accelerator)
        artifacts.publish(*BPR_CHECKPOINT)
        for row in result.history:
            run.log(row)
        run.summary(best_val_mrr=result.best_val_mrr, triplets_per_second=result.triplets_per_second)
        location = run.location
    context.log.info(f"BPR: {result.epochs_run} epochs, best val MRR {result.best_val_mrr:.4f}, "
                     f"{result.triplets_per_second:,.0f} triplets/s on {result.device}")
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(result.checkpoint),
        "epochs_run": result.epochs_run,
        "best_val_mrr": round(result.best_val_mrr, 5) if np.isfinite(result.best_val_mrr) else "no validation rows",
        "triplets": int(triplets.shape[0]),
        "triplets_per_second": round(result.triplets_per_second),
        "train_seconds": round(result.train_seconds, 2),
        "device": result.device,
        "compiled_update": result.compiled_update,
        "compile_seconds": round(result.compile_seconds, 2),
        "hyperparameters_from": source,
        "config": dg.MetadataValue.json(asdict(bpr_config)),
        "wandb_run": location,
        "val_history": dg.MetadataValue.md(_history_table(result.history)),
        "peak_rss_mb": peak_rss_mb(),
    })


class NeighborsConfig(dg.Config):
    k: int = Field(default=100, ge=1)
    """Neighbours kept per user."""
    block_size: int = Field(default=2048, ge=1)
    """Users per similarity block (memory grows with it)."""


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"scipy"}, deps=["user_song_matrix"])
def user_neighbors(context: dg.AssetExecutionContext, config: NeighborsConfig, artifacts: ArtifactStore
                   ) -> dg.MaterializeResult:
    """Exact top-k cosine neighbours per user on L2-normalized user-song rows (blocked sparse products)."""
    started = time.perf_counter()
    user_song = load_csr(artifacts.path("prepare", "user_song.npz"))
    result = top_k_neighbors(user_song, k=config.k, block_size=config.block_size)
    seconds = time.perf_counter() - started
    path = artifacts.save_arrays(*NEIGHBORS, neighbors=result.neighbors, similarities=result.similarities)
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


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"}, deps=["user_splits", "feedback_positives"])
def popularity_model(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    """Playlists ranked by how many users like them in train."""
    scores = popularity_scores(train_positive_matrix(artifacts))
    path = artifacts.save_arrays(*POPULARITY, scores=scores)
    top = np.argsort(-scores, kind="stable")[:10]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "playlists_with_a_train_like": int((scores > 0).sum()),
        "top_10": dg.MetadataValue.md(markdown_table([{"playlist_idx": int(j), "train likes": int(scores[j])} for j in top])),
    })


class ALSConfig(dg.Config):
    factors: list[int] = Field(default=[32, 64], min_length=1)
    """Factor sizes tried."""
    alphas: list[float] = Field(default=[1.0, 10.0], min_length=1)
    """Confidence scales tried."""
    regularization: float = Field(default=0.05, ge=0)
    iterations: int = Field(default=15, ge=1)


@dg.asset(group_name=TRAIN_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"}, deps=["user_splits", "eval_batches", "feedback_positives"])
def als_model(context: dg.AssetExecutionContext, config: ALSConfig, artifacts: ArtifactStore,
              settings: PipelineSettings) -> dg.MaterializeResult:
    """ALS (``implicit``, BM25-weighted) with a factors x alpha sweep; the best by val MRR is kept."""
    positives = train_positive_matrix(artifacts)
    users, pos, negs = val_batch(artifacts)
    candidates = np.concatenate([pos[:, None], negs], axis=1)
    trials, best = [], None
    for factors in config.factors:
        for alpha in config.alphas:
            started = time.perf_counter()
            result = train_als(positives, factors=factors, alpha=alpha, regularization=config.regularization,
                               iterations=config.iterations, seed=settings.seed)
            # chunked: a (B, 51, d) gather of the whole val batch would need ~12 GB at bench scale
            scores = factor_candidate_scores(result.user_factors, result.item_factors, users, candidates)
            mrr = sampled_metrics(scores)["mrr"]
            trials.append({"factors": factors, "alpha": alpha, "val_mrr": round(mrr, 5),
                           "seconds": round(time.perf_counter() - started, 2)})
            if best is None or mrr > best[0]:
                best = (mrr, result)
    mrr, result = best
    path = artifacts.save_arrays(*ALS, user_factors=result.user_factors, item_factors=result.item_factors)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "best_factors": result.factors,
        "best_alpha": result.alpha,
        "best_val_mrr": round(mrr, 5),
        "sweep": dg.MetadataValue.md(markdown_table(trials)),
    })
