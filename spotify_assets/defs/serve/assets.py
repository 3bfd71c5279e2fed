"""Serving: the chosen model's embeddings, Annoy indexes with measured recall, top-5 lists."""

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.defs.split.assets import load_interactions
from spotify_assets.contract import ALS, BPR_CHECKPOINT, POPULARITY
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.train.bpr import load_checkpoint
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, PipelineSettings
from spotify_assets.serving.index import augment_for_bias, build_annoy, load_annoy, measure_recall, tune_search_k
from spotify_assets.serving.recommender import (
    BUNDLE,
    BUNDLE_INFO,
    PLAYLIST_INDEX,
    PLAYLISTS,
    TRACK_INDEX,
    USER_INDEX,
    USERS,
    Recommender,
    index_info_path,
)

SERVE_GROUP = "serve"
FACTOR_MODELS = ("bpr", "als")
RECALL_FLOOR = 0.9


class ServingModelConfig(dg.Config):
    model: str = Field(default="auto", description="'auto' (the factor model with the best validation Recall@10 "
                                                   "on the leaderboard), 'bpr' or 'als'.")
    popular_list: int = Field(default=100, ge=5, description="Length of the cold-start popularity list kept.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in ("auto", *FACTOR_MODELS):
            raise ValueError("model must be 'auto', 'bpr' or 'als'")
        return value


def _choose_model(con, wanted: str) -> tuple[str, str, list[dict]]:
    # Chosen on the validation full ranking (serving ranks every playlist); test rows are
    # only reported, so the choice never reads a test answer.
    rows = con.execute('SELECT model, "recall@10", "ndcg@10" FROM model_leaderboard WHERE split = \'val\' '
                       "AND segment = 'all' AND model IN ('bpr', 'als') ORDER BY \"recall@10\" DESC NULLS LAST, "
                       '"ndcg@10" DESC NULLS LAST, model').fetchall()

    def shown(value: float | None) -> float | str:
        return "n/a" if value is None else round(value, 4)

    table = [{"model": m, "val Recall@10": shown(r), "val NDCG@10": shown(n)} for m, r, n in rows]
    if wanted != "auto":
        return wanted, "run config", table
    if not rows:
        raise dg.Failure("model_leaderboard has no BPR/ALS validation rows: materialize model_leaderboard first")
    if rows[0][1] is None:  # the split held out no validation answers (tiny data)
        return rows[0][0], "no validation users: the first factor model by name", table
    return rows[0][0], f"best validation Recall@10 on the leaderboard ({rows[0][1]:.4f})", table


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy", "duckdb"},
    deps=["model_leaderboard", "bpr_model", "als_model", "popularity_model", "training_interactions",
          "stg_playlists"],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def serving_model(context: dg.AssetExecutionContext, config: ServingModelConfig, artifacts: ArtifactStore,
                  warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """The bundle the service loads: the chosen model's user and playlist vectors (bias folded
    in, so a dot product is the model's score), per-user exclusions (train likes, feedback likes,
    owned playlists), the cold-start flag and popularity list, and playlist names / user ids."""
    if config.model not in ("auto", *FACTOR_MODELS):
        raise dg.Failure(f"model must be 'auto', 'bpr' or 'als', got {config.model!r}")
    started = time.perf_counter()
    with warehouse.connect(read_only=True) as con:
        model, reason, board = _choose_model(con, config.model)
        playlists = con.sql(
            "SELECT d.pid, coalesce(p.name, '') AS name FROM playlist_dictionary d "
            "LEFT JOIN stg_playlists p USING (pid) ORDER BY d.playlist_idx").to_arrow_table()
        users = con.sql("SELECT user_id FROM user_dictionary ORDER BY uid").to_arrow_table()
    if model == "bpr":
        net = load_checkpoint(artifacts.file(BPR_CHECKPOINT))
        user_vectors, playlist_vectors = augment_for_bias(
            net.users.weight.detach().numpy(), net.playlists.weight.detach().numpy(),
            net.bias.weight.detach().numpy()[:, 0])
    else:
        als = artifacts.read(ALS, "user_factors", "item_factors")
        user_vectors, playlist_vectors = augment_for_bias(als["user_factors"], als["item_factors"])
    excluded = load_interactions(artifacts)
    # Users without interactions carry vectors folded in from their song neighbours; the ones
    # left with a zero vector (no neighbour with history) get the popularity list.
    cold = ~np.any(user_vectors[:, :-1] if model == "bpr" else user_vectors, axis=1)
    popularity = artifacts.read(POPULARITY, "scores")["scores"]
    popular = np.argsort(-popularity, kind="stable")[:config.popular_list].astype(np.int64)
    if playlists.num_rows != playlist_vectors.shape[0] or users.num_rows != user_vectors.shape[0]:
        raise dg.Failure(f"model has {user_vectors.shape[0]} users x {playlist_vectors.shape[0]} playlists but the "
                         f"dictionaries hold {users.num_rows} x {playlists.num_rows}: retrain the models")
    # Playlists whose vector is all zeros (ALS gives them to playlists nobody likes in train)
    # cannot be ranked by the model; as thousands of identical points they also wreck Annoy's
    # tree splits. The index holds the others.
    indexed = np.flatnonzero(np.abs(playlist_vectors[:, :-1] if model == "bpr" else playlist_vectors).sum(axis=1) > 0)
    bundle_id = hashlib.sha1(user_vectors.tobytes() + playlist_vectors.tobytes()
                             + excluded.indices.tobytes()).hexdigest()[:16]
    for parts, table in ((PLAYLISTS, playlists), (USERS, users)):
        with artifacts.atomic_path(*parts) as tmp:
            pq.write_table(table, tmp)
    path = artifacts.save_arrays(*BUNDLE, user_vectors=user_vectors, playlist_vectors=playlist_vectors,
                                 excluded_indptr=excluded.indptr.astype(np.int64),
                                 excluded=excluded.indices.astype(np.int64), cold_start=cold,
                                 popular=popular, popular_scores=popularity[popular].astype(np.float32),
                                 indexed_playlists=indexed.astype(np.int64))
    info = {"model": model, "chosen_by": reason, "bundle_id": bundle_id, "n_users": int(user_vectors.shape[0]),
            "n_playlists": int(playlist_vectors.shape[0]), "indexed_playlists": int(indexed.size),
            "dim": int(user_vectors.shape[1])}
    with artifacts.atomic_path(*BUNDLE_INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    context.log.info(f"serving {model} ({reason}); {cold.sum()} of {cold.size} users on the cold-start path")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "model": model,
        "chosen_by": reason,
        "candidates": dg.MetadataValue.md(markdown_table(board)),
        "bundle_id": bundle_id,
        "users": int(user_vectors.shape[0]),
        "playlists": int(playlist_vectors.shape[0]),
        "vector_dim": int(user_vectors.shape[1]),
        "cold_start_users": int(cold.sum()),
        "indexed_playlists": int(indexed.size),
        "excluded_pairs": int(excluded.nnz),
        "seconds": round(time.perf_counter() - started, 3),
    })


class IndexConfig(dg.Config):
    n_trees: int = Field(default=50, ge=1, description="Annoy trees: more = better recall, bigger file, slower build.")
    search_k: int = Field(default=0, description="Nodes inspected per query; 0 = tuned: the smallest n_trees x 10 x "
                                                "2^i whose measured recall@10 reaches recall_target; -1 = Annoy's default.")
    recall_target: float = Field(default=0.95, gt=0, le=1, description="Recall@10 the tuned search_k aims for.")
    build_threads: int = Field(default=1, description="Threads for the build; -1 = every core. Multi-threaded "
                                                    "Annoy builds are not byte-reproducible, so 1 by default.")
    recall_queries: int = Field(default=1000, ge=1, description="Seeded sample of users whose recall@10 is measured.")


def _index_metadata(path, seconds: float, n_items: int, metric: str, config: IndexConfig, report) -> dict:
    return {
        "path": dg.MetadataValue.path(str(path)),
        "items": n_items,
        "metric": metric,
        "n_trees": config.n_trees,
        "build_seconds": round(seconds, 3),
        "file_mb": round(path.stat().st_size / 2**20, 2),
        **report.as_metadata(),
        "recall_vs_exact": dg.MetadataValue.md(markdown_table([
            {"search": "annoy", f"recall@{report.k}": round(report.recall, 4),
             "queries/s": round(report.index_qps)},
            {"search": "exact (numpy, blocked)", f"recall@{report.k}": 1.0, "queries/s": round(report.exact_qps)},
        ])),
    }


def _recall_check(asset: str, report) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="recall_at_10_vs_exact", asset_key=asset, passed=bool(report.recall >= RECALL_FLOOR),
        description=f"recall@10 {report.recall:.4f} against exact search (floor {RECALL_FLOOR})",
        metadata={"recall_at_10": round(report.recall, 4), "queries": report.queries})


def _recall_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("recall_at_10_vs_exact", asset=asset, blocking=True,
                             description=f"Annoy's recall@10 against exact search is at least {RECALL_FLOOR}.")


def _query_sample(cold: np.ndarray, n: int, seed: int, stream: int) -> np.ndarray:
    """Seeded sample of users the index serves: not cold (cold users get the popularity list, and
    their never-trained vectors are zeros or noise whose neighbours are ties)."""
    warm = np.flatnonzero(~cold)
    if warm.size == 0:
        warm = np.arange(cold.size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    return np.sort(rng.choice(warm, size=min(n, warm.size), replace=False))


def _build_and_measure(context, artifacts: ArtifactStore, parts: tuple[str, str], items: np.ndarray,
                       queries: np.ndarray, metric: str, config: IndexConfig, seed: int,
                       **info: object) -> tuple[dict, object]:
    """Build, tune/measure recall, then write the index's .json (metric, settings, recall, speeds,
    ``info``) last: the service reloads when it changes."""
    path = artifacts.path(*parts)
    seconds = build_annoy(items, path, metric=metric, n_trees=config.n_trees, seed=seed, n_jobs=config.build_threads)
    artifacts.publish(*parts)
    index = load_annoy(path, items.shape[1], metric)
    if config.search_k == 0:
        report, tried = tune_search_k(index, items, queries, metric, config.n_trees, k=10,
                                      target=config.recall_target)
    else:
        report = measure_recall(index, items, queries, metric, k=10, search_k=config.search_k)
        tried = [report]
    index.unload()
    context.log.info(f"{parts[-1]}: {items.shape[0]} items in {seconds:.2f}s, recall@10 {report.recall:.4f}, "
                     f"{report.index_qps:,.0f} q/s vs exact {report.exact_qps:,.0f} q/s")
    with artifacts.atomic_path(*index_info_path(parts)) as tmp:
        tmp.write_text(json.dumps({
            **info, "metric": metric, "dim": int(items.shape[1]), "n_trees": config.n_trees,
            "search_k": report.search_k, "recall_at_10": report.recall, "annoy_qps": report.index_qps,
            "exact_qps": report.exact_qps, "index_faster_than_exact": bool(report.index_qps >= report.exact_qps),
        }, indent=2))
    metadata = _index_metadata(path, seconds, items.shape[0], metric, config, report)
    metadata["search_k_tuning"] = dg.MetadataValue.md(markdown_table(
        [{"search_k": r.search_k, "recall@10": round(r.recall, 4), "queries/s": round(r.index_qps)} for r in tried]))
    return metadata, report


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"}, deps=["serving_model"],
    check_specs=[_recall_spec("playlist_index")],
)
def playlist_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
                   settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the serving model's playlist vectors with the ``dot`` metric (bias folded
    in, so it ranks by the model's own score); recall@10 and queries/s measured against exact
    search for a seeded sample of users."""
    bundle = artifacts.load_arrays(*BUNDLE)
    info = json.loads(artifacts.path(*BUNDLE_INFO).read_text())
    users, items = bundle["user_vectors"], bundle["playlist_vectors"][bundle["indexed_playlists"]]
    queries = users[_query_sample(bundle["cold_start"], config.recall_queries, settings.seed, 0x1DE7)]
    # the service uses the index only with the bundle it was built from
    metadata, report = _build_and_measure(context, artifacts, PLAYLIST_INDEX, items, queries, "dot", config,
                                          settings.seed, bundle_id=info["bundle_id"])
    return dg.MaterializeResult(metadata={"model": info["model"], **metadata},
                                check_results=[_recall_check("playlist_index", report)])


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"}, deps=["serving_model"],
    check_specs=[_recall_spec("user_index")],
)
def user_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
               settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the serving model's user vectors (``angular``: users alike in taste,
    whatever their activity level), for "listeners like you"; recall@10 against exact cosine."""
    bundle = artifacts.load_arrays(*BUNDLE)
    users = bundle["user_vectors"]
    info = json.loads(artifacts.path(*BUNDLE_INFO).read_text())
    if info["model"] == "bpr":
        users = users[:, :-1]  # drop the constant column that carries the playlist bias
    queries = users[_query_sample(bundle["cold_start"], config.recall_queries, settings.seed, 0x05E4)]
    metadata, report = _build_and_measure(context, artifacts, USER_INDEX, users, queries, "angular", config,
                                          settings.seed, bundle_id=info["bundle_id"])
    return dg.MaterializeResult(metadata={"model": info["model"], **metadata},
                                check_results=[_recall_check("user_index", report)])


class RecommendationsConfig(dg.Config):
    k: int = Field(default=5, ge=1, le=100, description="Playlists recommended per user.")
    threads: int = Field(default=0, ge=0, description="Query threads; 0 = one per core.")


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb", "annoy"},
    deps=["playlist_index"],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[dg.AssetCheckSpec("recommendations_valid", asset="recommendations", blocking=True,
                                   description="k distinct playlists per user, none owned or liked in train.")],
)
def recommendations(context: dg.AssetExecutionContext, config: RecommendationsConfig, artifacts: ArtifactStore,
                    warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Top-k playlists for every user through the playlist index, excluding owned and
    train-liked playlists; users without a train like get the popularity list (cold start).
    DuckDB table ``recommendations`` (uid, user_id, rank, pid, score, model, cold_start)."""
    started = time.perf_counter()
    artifacts.sync_down("serve")
    rec = Recommender(artifacts.local_root())
    n_users, k = len(rec.user_ids), config.k
    # Annoy answers one query per call and releases the GIL while searching, and exact scoring
    # is BLAS: either way one thread per core.
    chunks = np.array_split(np.arange(n_users), max(1, min(n_users, 64)))
    done = [0]

    def run(chunk: np.ndarray) -> list:
        out = rec.recommend_many(chunk, k)
        done[0] += chunk.size
        context.log.info(f"{done[0]}/{n_users} users ({done[0] / (time.perf_counter() - started):,.0f}/s)")
        return out

    with ThreadPoolExecutor(max_workers=config.threads or os.cpu_count() or 1) as pool:
        lists = [r for part in pool.map(run, chunks) for r in part]
    lengths = np.array([r.playlists.size for r in lists], np.int64)
    uid = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    playlist_idx = np.concatenate([r.playlists for r in lists]) if lists else np.empty(0, np.int64)
    scores = np.concatenate([r.scores for r in lists]) if lists else np.empty(0, np.float32)
    cold = np.array([r.cold_start for r in lists], bool)
    rank = np.arange(uid.size) - np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + 1
    seconds = time.perf_counter() - started
    table = pa.table({
        "uid": pa.array(uid.astype(np.int32)),
        "user_id": pa.array(np.asarray(rec.user_ids, dtype=object)[uid], pa.string()),
        "rank": pa.array(rank.astype(np.int16)),
        "pid": pa.array(rec.pids[playlist_idx].astype(np.int64)),
        "playlist_idx": pa.array(playlist_idx.astype(np.int32)),
        "score": pa.array(scores.astype(np.float64)),
        "model": pa.array(np.where(cold[uid], "popularity", rec.model).astype(object), pa.string()),
        "cold_start": pa.array(cold[uid]),
    })
    with warehouse.connect() as con:
        replace_tables(con, {"recommendations": table})
        meta = table_metadata(con, "recommendations")
    ok, problems = recommendations_valid(uid, playlist_idx, lengths, rec, k)
    coverage = np.unique(playlist_idx).size / max(rec.n_playlists, 1)
    examples = [{"user_id": rec.user_ids[u], "cold_start": bool(cold[u]),
                 "playlists": ", ".join(f"{rec.names[j]} ({s:.3f})" for j, s in
                                        zip(lists[u].playlists.tolist(), lists[u].scores.tolist()))}
                for u in range(min(n_users, 5))]
    return dg.MaterializeResult(
        metadata={
            **meta,
            "model": rec.model,
            "users": n_users,
            "coverage": round(coverage, 4),
            "cold_start_share": round(float(cold.mean()) if n_users else 0.0, 4),
            "seconds": round(seconds, 2),
            "users_per_second": round(n_users / max(seconds, 1e-9)),
            "search": "annoy" if rec.use_index else "exact (annoy was slower at the tuned recall)",
            "examples": dg.MetadataValue.md(markdown_table(examples)),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[dg.AssetCheckResult(check_name="recommendations_valid", passed=ok,
                                           description="; ".join(problems) or "all lists valid")],
    )


def recommendations_valid(uid: np.ndarray, playlist_idx: np.ndarray, lengths: np.ndarray, rec: Recommender,
                          k: int) -> tuple[bool, list[str]]:
    """Every user got min(k, available) distinct playlists, none of them excluded."""
    problems = []
    available = rec.n_playlists - np.diff(rec.excluded.indptr)
    short = int((lengths < np.minimum(k, available)).sum())
    if short:
        problems.append(f"{short} users got fewer than {k} playlists")
    keys = uid * np.int64(rec.n_playlists) + playlist_idx
    if np.unique(keys).size != keys.size:
        problems.append("a user got the same playlist twice")
    hit = rec.excluded[uid, playlist_idx] if uid.size else np.zeros((1, 0))
    n_hit = int(np.asarray(hit).sum())
    if n_hit:
        problems.append(f"{n_hit} recommended playlists are owned or liked in train")
    return not problems, problems


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"}, deps=["track_embeddings"],
    check_specs=[_recall_spec("track_index")],
)
def track_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
                settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the track embeddings (``angular``: item2vec/SVD similarity is cosine);
    item i is row i of ``tracks/track_embeddings.npz``. ``python -m spotify_assets.tracks similar``
    uses it when present; recall@10 against exact cosine on a seeded sample of tracks."""
    embeddings = artifacts.load_arrays("tracks", "track_embeddings.npz")
    vectors = embeddings["vectors"].astype(np.float32)
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x7AC5]))
    queries = vectors[np.sort(rng.choice(vectors.shape[0], size=min(config.recall_queries, vectors.shape[0]),
                                         replace=False))]
    metadata, report = _build_and_measure(context, artifacts, TRACK_INDEX, vectors, queries, "angular", config,
                                          settings.seed)
    return dg.MaterializeResult(metadata=metadata, check_results=[_recall_check("track_index", report)])
