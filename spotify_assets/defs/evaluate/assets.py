"""The leaderboard: every model on the same test batches and full rankings."""

import time

import dagster as dg
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.defs.train.assets import (
    ALS,
    BPR_CHECKPOINT,
    NEIGHBORS,
    POPULARITY,
    train_positive_matrix,
)
from spotify_assets.evaluate import (
    evaluate_full,
    evaluate_sampled,
    factor_scorer,
    knn_scorer,
    oracle_scorer,
    popularity_scorer,
    random_scorer,
)
from spotify_assets.matrices import load_csr
from spotify_assets.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.models.baselines import Oracle
from spotify_assets.models.bpr import load_checkpoint
from spotify_assets.models.knn import Neighbors
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, PipelineSettings
from spotify_assets.splits import TEST

EVALUATE = "evaluate"


class LeaderboardConfig(dg.Config):
    full_ranking_users: int = 2000
    """Test users (seeded sample) ranked over all playlists; 0 = all of them."""


@dg.asset(
    group_name=EVALUATE, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"duckdb", "numpy"},
    deps=["bpr_model", "user_neighbors", "popularity_model", "als_model", "eval_batches", "feedback_positives"],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[dg.AssetCheckSpec("bpr_beats_popularity", asset="model_leaderboard", blocking=True,
                                   description="BPR's test MRR is above the popularity baseline's.")],
)
def model_leaderboard(context: dg.AssetExecutionContext, config: LeaderboardConfig, artifacts: ArtifactStore,
                      warehouse: DuckDBWarehouse, settings: PipelineSettings) -> dg.MaterializeResult:
    """Random, popularity, ALS, KNN, BPR and the oracle (true score) on the same test
    eval batches (MRR, Hit@1/5/10; overall, warm, cold and light cold users) and by full ranking of
    every non-excluded playlist (Recall@10/50, NDCG@10)."""
    started = time.perf_counter()
    batches = artifacts.load_arrays("split", "eval_batches.npz")
    users, positives, negatives, cold = (batches["test_users"], batches["test_positives"],
                                         batches["test_negatives"], batches["test_cold"])
    user_song = load_csr(artifacts.path("prepare", "user_song.npz"))
    playlist_song = load_csr(artifacts.path("prepare", "playlist_song.npz"))
    n_playlists = playlist_song.shape[0]
    train = train_positive_matrix(artifacts)
    vouched = train_positive_matrix(artifacts, with_owned=True)
    net = load_checkpoint(artifacts.path(*BPR_CHECKPOINT))
    als = artifacts.load_arrays(*ALS)
    nb = artifacts.load_arrays(*NEIGHBORS)
    scorers = [
        random_scorer(settings.seed, n_playlists),
        popularity_scorer(artifacts.load_arrays(*POPULARITY)["scores"]),
        factor_scorer("als", als["user_factors"], als["item_factors"]),
        knn_scorer(Neighbors(nb["neighbors"], nb["similarities"]), vouched),
        factor_scorer("bpr", net.users.weight.detach().numpy(), net.playlists.weight.detach().numpy(),
                      net.bias.weight.detach().numpy()[:, 0]),
        oracle_scorer(Oracle(user_song, playlist_song, artifacts.load_arrays("label", "exploration.npz")["e"])),
    ]
    # Light users (< 5 positives) keep every positive in train, so only cold light users have
    # held-out rows: that is the light segment.
    n_positives = np.diff(artifacts.load_arrays("label", "labels.npz")["liked_indptr"])[users]
    segments = {"warm": ~cold, "cold": cold, "cold_light (<5 positives)": cold & (n_positives < 5)}
    # full ranking: held-out test positives; excluded = train positives and owned playlists
    labels = artifacts.load_arrays("label", "labels.npz")
    split = artifacts.load_arrays("split", "user_splits.npz")["split"]
    liked_users = np.repeat(np.arange(labels["n_scored"].size), np.diff(labels["liked_indptr"]))
    test = split == TEST
    relevant = sp.csr_matrix((np.ones(test.sum(), np.float32), (liked_users[test], labels["liked_playlists"][test])),
                             shape=train.shape)
    test_users = np.unique(liked_users[test])
    if 0 < config.full_ranking_users < test_users.size:
        rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x1EAD]))
        test_users = np.sort(rng.choice(test_users, size=config.full_ranking_users, replace=False))
    rows = []
    for scorer in scorers:
        t = time.perf_counter()
        sampled = evaluate_sampled(scorer, users, positives, negatives, segments)
        full = evaluate_full(scorer, test_users, relevant, vouched)
        for row in sampled:
            row.update({k: v for k, v in full.items() if k != "users"} if row["segment"] == "all" else {})
        rows += sampled
        context.log.info(f"{scorer.name}: test MRR {sampled[0]['mrr']:.4f}, recall@10 {full['recall@10']:.4f} "
                         f"({time.perf_counter() - t:.1f}s)")
    columns = ["model", "segment", "rows", "mrr", "hit@1", "hit@5", "hit@10", "recall@10", "recall@50", "ndcg@10"]
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    with warehouse.connect() as con:
        replace_tables(con, {"model_leaderboard": table})
        meta = table_metadata(con, "model_leaderboard")
    overall = {r["model"]: r for r in rows if r["segment"] == "all"}
    passed = overall["bpr"]["mrr"] > overall["popularity"]["mrr"]
    pretty = [{c: (round(r[c], 4) if isinstance(r.get(c), float) else r.get(c, "")) for c in columns} for r in rows]
    return dg.MaterializeResult(
        metadata={
            **meta,
            "leaderboard": dg.MetadataValue.md(markdown_table(pretty)),
            "test_rows": int(users.size),
            "full_ranking_users": int(test_users.size),
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[dg.AssetCheckResult(
            check_name="bpr_beats_popularity", passed=bool(passed),
            description=f"BPR test MRR {overall['bpr']['mrr']:.4f} vs popularity {overall['popularity']['mrr']:.4f}",
            metadata={"bpr_mrr": overall["bpr"]["mrr"], "popularity_mrr": overall["popularity"]["mrr"]},
        )],
    )
