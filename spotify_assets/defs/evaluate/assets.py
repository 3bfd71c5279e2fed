"""The leaderboard: every model on the same held-out users, by full ranking first.

Full ranking (primary): every playlist except the user's training interactions (and, for
test, the validation answers) is ranked; Recall@10/50 and NDCG@10 per segment for the
validation task (what every choice upstream used) and the test task (reported only). The
sampled MRR / Hit@10 of the test eval batches stays as the column comparable with the
original system. ``oracle_gap_closed`` is how much of the distance from popularity to the
oracle (the true score that defines the labels) a model covers.
"""

import time

import dagster as dg
import numpy as np
import pyarrow as pa

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import (
    ALS,
    BPR_CHECKPOINT,
    EVAL_BATCHES,
    EXPLORATION,
    INTERACTIONS,
    LABELS,
    LEADERBOARD_PLOT,
    MODEL_SUMMARIES,
    NEIGHBORS,
    PLAYLIST_SONG,
    POPULARITY,
    SONG_RANKER,
    SPLITS,
    USER_SONG,
    deps,
)
from spotify_assets.defs.split.assets import held_out_tasks, load_interactions
from spotify_assets.defs.train.assets import load_neighbors, read_summary
from spotify_assets.evaluate.tasks import (
    SEGMENTS,
    block_scorer,
    evaluate_full,
    evaluate_sampled,
    factor_scorer,
    knn_scorer,
    oracle_scorer,
    popularity_scorer,
    random_scorer,
)
from spotify_assets.evaluate.leaderboard import leaderboard_plot, leaderboard_rows, markdown_leaderboard, quality_gate
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, png_metadata, replace_tables, table_metadata
from spotify_assets.train.baselines import Oracle
from spotify_assets.train.song_scoring import SongRanker, SongSignals
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, PipelineSettings

EVALUATE = "evaluate"


class LeaderboardConfig(dg.Config):
    full_ranking_users: int = 2000
    """Users (seeded sample) ranked over all playlists, per task (validation and test); 0 = all."""
    min_positives: int = 5
    """The "light" segment: users with fewer liked playlists than this."""
    gate_min_users: int = 30
    """The quality checks judge only with at least this many validation users (else they pass, saying so)."""


@dg.asset(
    group_name=EVALUATE, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"duckdb", "numpy"},
    deps=deps(BPR_CHECKPOINT, NEIGHBORS, POPULARITY, ALS, SONG_RANKER, EVAL_BATCHES, INTERACTIONS, LABELS, SPLITS,
              USER_SONG, PLAYLIST_SONG, EXPLORATION, *MODEL_SUMMARIES.values()),
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[
        dg.AssetCheckSpec("bpr_beats_popularity", asset="model_leaderboard", blocking=True,
                          description="BPR's validation Recall@10 is above the popularity baseline's."),
        dg.AssetCheckSpec("song_ranker_beats_knn", asset="model_leaderboard",
                          description="The song ranker's validation Recall@10 and NDCG@10 are above exact KNN's."),
    ],
)
def model_leaderboard(context: dg.AssetExecutionContext, config: LeaderboardConfig, artifacts: ArtifactStore,
                      warehouse: DuckDBWarehouse, settings: PipelineSettings) -> dg.MaterializeResult:
    """Random, popularity, ALS, KNN, BPR, the song ranker and the oracle on the same validation
    and test users: full-ranking Recall@10/50 and NDCG@10 per segment (all, warm, cold, light),
    the sampled MRR/Hit@10 of the test eval batches, train seconds, and whether each model is
    leak-free."""
    started = time.perf_counter()
    interactions = load_interactions(artifacts)
    val, test = held_out_tasks(artifacts, interactions, config.min_positives)
    tasks = [val.subset(config.full_ranking_users, settings.seed), test.subset(config.full_ranking_users, settings.seed)]
    user_song = artifacts.read_csr(USER_SONG)
    playlist_song = artifacts.read_csr(PLAYLIST_SONG)
    neighbors = load_neighbors(artifacts)
    from spotify_assets.train.bpr import read_checkpoint  # torch: loaded by the step, not the definitions

    net = read_checkpoint(artifacts.file(BPR_CHECKPOINT)).net
    als = artifacts.read(ALS, "user_factors", "item_factors")
    ranker = SongRanker(SongSignals.build(user_song, playlist_song, interactions, neighbors),
                        artifacts.read(SONG_RANKER, *SONG_RANKER.arrays))
    scorers = [
        random_scorer(settings.seed, playlist_song.shape[0]),
        popularity_scorer(artifacts.read(POPULARITY, "scores")["scores"]),
        factor_scorer("als", als["user_factors"], als["item_factors"]),
        knn_scorer(neighbors, interactions),
        factor_scorer("bpr", net.user_embeddings(), net.playlist_embeddings(), net.playlist_bias()),
        block_scorer("song_ranker", ranker.score_all),
        oracle_scorer(Oracle(user_song, playlist_song, artifacts.read(EXPLORATION, "e")["e"])),
    ]
    batches = artifacts.read(EVAL_BATCHES, "test_users", "test_positives", "test_negatives", "test_cold")
    users, cold = batches["test_users"], batches["test_cold"]
    n_liked = np.diff(artifacts.read(LABELS, "liked_indptr")["liked_indptr"])[users]
    sampled_segments = {"warm": ~cold, "cold": cold, "light": n_liked < config.min_positives}
    full, sampled, summaries = {}, {}, {}
    for scorer in scorers:
        t = time.perf_counter()
        full[scorer.name] = {task.name: evaluate_full(scorer, task) for task in tasks}
        sampled[scorer.name] = {row["segment"]: row for row in evaluate_sampled(
            scorer, users, batches["test_positives"], batches["test_negatives"], sampled_segments)}
        summaries[scorer.name] = read_summary(artifacts, scorer.name)
        context.log.info(f"{scorer.name}: val Recall@10 {full[scorer.name]['val']['all']['recall@10']:.4f}, "
                         f"test Recall@10 {full[scorer.name]['test']['all']['recall@10']:.4f} "
                         f"({time.perf_counter() - t:.1f}s)")
    rows = leaderboard_rows(full, sampled, summaries)
    with warehouse.connect() as con:
        replace_tables(con, {"model_leaderboard": pa.Table.from_pylist(rows)})
        meta = table_metadata(con, "model_leaderboard")
    plot = artifacts.file(LEADERBOARD_PLOT)
    with artifacts.writing(LEADERBOARD_PLOT) as tmp:
        leaderboard_plot(rows, tmp)
    val_all = {name: full[name]["val"]["all"] for name in full}
    bpr_ok, bpr_says = quality_gate(val_all["bpr"], val_all["popularity"], config.gate_min_users)
    ranker_ok = all(quality_gate(val_all["song_ranker"], val_all["knn"], config.gate_min_users, metric)[0]
                    for metric in ("recall@10", "ndcg@10"))
    return dg.MaterializeResult(
        metadata={
            **meta,
            "test_leaderboard": dg.MetadataValue.md(markdown_leaderboard(rows, "test")),
            "validation_leaderboard": dg.MetadataValue.md(markdown_leaderboard(rows, "val")),
            "plot": png_metadata(plot, "test Recall@10 and NDCG@10 by model and segment"),
            "users": dg.MetadataValue.md(markdown_table([
                {"task": task.name, **{segment: int(task.segments[segment].sum()) for segment in SEGMENTS}}
                for task in tasks])),
            "sampled_test_rows": int(users.size),
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="bpr_beats_popularity", passed=bool(bpr_ok), description=f"BPR vs popularity: {bpr_says}",
                metadata={"bpr_val_recall@10": val_all["bpr"]["recall@10"],
                          "popularity_val_recall@10": val_all["popularity"]["recall@10"],
                          "validation_users": val_all["bpr"]["users"]}),
            dg.AssetCheckResult(
                check_name="song_ranker_beats_knn", passed=bool(ranker_ok), severity=dg.AssetCheckSeverity.WARN,
                description=f"song ranker validation Recall@10 {val_all['song_ranker']['recall@10']:.4f} / NDCG@10 "
                            f"{val_all['song_ranker']['ndcg@10']:.4f} vs KNN {val_all['knn']['recall@10']:.4f} / "
                            f"{val_all['knn']['ndcg@10']:.4f}"),
        ],
    )
