"""Serving: the chosen model's embeddings, Annoy indexes with measured recall, top-5 lists."""

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from pydantic import Field, field_validator

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.defs.split.assets import load_interactions
from spotify_assets.contract import (
    ALS,
    BPR_CHECKPOINT,
    BUNDLE,
    BUNDLE_DIR,
    BUNDLE_INFO,
    BUNDLE_PLAYLIST_TRACKS,
    BUNDLE_PLAYLISTS,
    BUNDLE_SONGS,
    BUNDLE_USERS,
    INTERACTIONS,
    NEIGHBORS,
    PLAYLIST_INDEX,
    PLAYLIST_INDEX_INFO,
    PLAYLIST_SONG,
    POPULARITY,
    RANKER_PREFIX,
    ROLLOUT,
    SONG_RANKER,
    TRACK_EMBEDDINGS,
    TRACK_INDEX,
    TRACK_INDEX_INFO,
    USER_INDEX,
    USER_INDEX_INFO,
    USER_SONG,
    Artifact,
    deps,
)
from spotify_assets.defs.train.assets import load_neighbors
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, PipelineSettings
from spotify_assets.serving.rollout import Rollout, deploy_bundle, read_rollout, write_rollout
from spotify_assets.serving.index import augment_for_bias, build_annoy, load_annoy, measure_recall, tune_search_k
from spotify_assets.serving.recommender import BUNDLE_KINDS, VECTORS, Recommender, model_version

SERVE_GROUP = "serve"
FACTOR_MODELS = ("bpr", "als")
#: the models a bundle can serve (vector models by index or exact scoring, the ranker exactly)
SERVABLE_MODELS = tuple(BUNDLE_KINDS)
RECALL_FLOOR = 0.9
PREVIEW_TRACKS = 3


class ServingModelConfig(dg.Config):
    model: str = Field(default="auto", description="'auto' (the servable model with the best validation Recall@10 "
                                                   "on the leaderboard), 'bpr', 'als' or 'song_ranker'.")
    popular_list: int = Field(default=100, ge=5, description="Length of the cold-start popularity list kept.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in ("auto", *SERVABLE_MODELS):
            raise ValueError(f"model must be 'auto' or one of {', '.join(SERVABLE_MODELS)}")
        return value


def _choose_model(con, wanted: str) -> tuple[str, str, list[dict]]:
    # Chosen on the validation full ranking (serving ranks every playlist); test rows are
    # only reported, so the choice never reads a test answer.
    placeholders = ", ".join("?" for _ in SERVABLE_MODELS)
    rows = con.execute('SELECT model, "recall@10", "ndcg@10" FROM model_leaderboard WHERE split = \'val\' '
                       f"AND segment = 'all' AND model IN ({placeholders}) ORDER BY \"recall@10\" DESC NULLS LAST, "
                       '"ndcg@10" DESC NULLS LAST, model', list(SERVABLE_MODELS)).fetchall()

    def shown(value: float | None) -> float | str:
        return "n/a" if value is None else round(value, 4)

    table = [{"model": m, "val Recall@10": shown(r), "val NDCG@10": shown(n)} for m, r, n in rows]
    if wanted != "auto":
        return wanted, "run config", table
    if not rows:
        raise dg.Failure(f"model_leaderboard has no validation rows for {', '.join(SERVABLE_MODELS)}: "
                         "materialize model_leaderboard first")
    if rows[0][1] is None:  # the split held out no validation answers (tiny data)
        return rows[0][0], "no validation users: the first servable model by name", table
    return rows[0][0], f"best validation Recall@10 on the leaderboard ({rows[0][1]:.4f})", table


def _vector_arrays(model: str, artifacts: ArtifactStore) -> tuple[dict[str, np.ndarray], np.ndarray, bytes]:
    """BPR/ALS bundle arrays (user and playlist vectors with the bias folded in, the playlists
    the index holds), the cold flag (zero user vector: no interaction and no song neighbour
    with one) and the bytes the bundle id hashes."""
    if model == "bpr":
        from spotify_assets.train.bpr import load_checkpoint  # torch: loaded by the step, not the definitions

        net = load_checkpoint(artifacts.file(BPR_CHECKPOINT))
        user_vectors, playlist_vectors = augment_for_bias(
            net.users.weight.detach().numpy(), net.playlists.weight.detach().numpy(),
            net.bias.weight.detach().numpy()[:, 0])
        factors_u, factors_p = user_vectors[:, :-1], playlist_vectors[:, :-1]
    else:
        als = artifacts.read(ALS, "user_factors", "item_factors")
        user_vectors, playlist_vectors = augment_for_bias(als["user_factors"], als["item_factors"])
        factors_u, factors_p = user_vectors, playlist_vectors
    cold = ~np.any(factors_u, axis=1)
    # Playlists whose vector is all zeros (ALS gives them to playlists nobody likes in train)
    # cannot be ranked by the model; as thousands of identical points they also wreck Annoy's
    # tree splits. The index holds the others.
    indexed = np.flatnonzero(np.abs(factors_p).sum(axis=1) > 0).astype(np.int64)
    arrays = {"user_vectors": user_vectors, "playlist_vectors": playlist_vectors, "indexed_playlists": indexed}
    return arrays, cold, user_vectors.tobytes() + playlist_vectors.tobytes()


def _ranker_arrays(artifacts: ArtifactStore, user_song: sp.csr_matrix) -> tuple[dict[str, np.ndarray], np.ndarray, bytes]:
    """Song-ranker bundle arrays: its weights (``ranker_*``) and the song neighbours its KNN
    feature reads; the cold flag (users without a matched song have no candidate)."""
    weights = artifacts.read(SONG_RANKER)
    neighbors = load_neighbors(artifacts)
    arrays = {f"{RANKER_PREFIX}{name}": value for name, value in weights.items()}
    arrays.update(neighbors=neighbors.neighbors, similarities=neighbors.similarities)
    cold = np.diff(user_song.indptr) == 0
    digest = b"".join(weights[name].tobytes() for name in sorted(weights)) + neighbors.neighbors.tobytes()
    return arrays, cold, digest


def _song_names(con, n_songs: int) -> pa.Table:
    """``song_idx`` (matrix column) -> ``name`` ("Title — Artist", the MPD spelling seen most).

    The matrices' columns are the matched song keys in ascending order: keys on both the
    listening (MSD) side and the playlist (MPD) side."""
    table = con.sql(
        """
        WITH listened AS (SELECT DISTINCT k.song_key_id FROM stg_listens l JOIN msd_song_keys k USING (song_id)
                          WHERE NOT k.mismatched),
        spelled AS (
            SELECT k.song_key_id, t.track_name || ' — ' || t.artist_name AS name, count(*) AS n
            FROM stg_playlist_tracks t JOIN mpd_track_keys k USING (track_uri)
            WHERE k.song_key_id IN (SELECT song_key_id FROM listened)
            GROUP BY ALL
        )
        SELECT song_key_id, arg_max(name, n) AS name FROM spelled GROUP BY song_key_id ORDER BY song_key_id
        """).to_arrow_table()
    if table.num_rows != n_songs:
        raise dg.Failure(f"{table.num_rows} matched songs in the warehouse, {n_songs} columns in the song matrices: "
                         "re-materialize the prepare group")
    return pa.table({"song_idx": pa.array(np.arange(n_songs, dtype=np.int32)), "name": table.column("name")})


def _playlist_previews(con, n: int) -> pa.Table:
    """The first ``n`` tracks ("Title — Artist") of every playlist, in dictionary order."""
    return con.sql(
        """
        SELECT d.playlist_idx, coalesce(list(t.track_name || ' — ' || t.artist_name ORDER BY t.pos)
                                          FILTER (WHERE t.pos < ?), []) AS tracks
        FROM playlist_dictionary d LEFT JOIN stg_playlist_tracks t USING (pid)
        GROUP BY d.playlist_idx ORDER BY d.playlist_idx
        """, params=[n]).to_arrow_table()


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy", "duckdb"},
    # the artifacts it reads, then the DuckDB tables (model_leaderboard: the table, not its plot)
    deps=[*deps(BPR_CHECKPOINT, ALS, SONG_RANKER, POPULARITY, INTERACTIONS, NEIGHBORS, USER_SONG, PLAYLIST_SONG),
          "model_leaderboard", "stg_playlists", "stg_playlist_tracks", "stg_listens", "msd_song_keys",
          "mpd_track_keys"],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def serving_model(context: dg.AssetExecutionContext, config: ServingModelConfig, artifacts: ArtifactStore,
                  warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """The bundle the service loads. For BPR/ALS (kind ``vectors``): user and playlist vectors
    (bias folded in, so a dot product is the model's score); for the song ranker (kind
    ``song_ranker``): its weights and the song neighbours, scored exactly. Always: per-user
    exclusions (train likes, feedback likes, owned playlists), the cold-start flag and popularity
    list, the user-song / playlist-song matrices, playlist names and first tracks, song names
    and user ids (what the page at ``/`` shows)."""
    if config.model not in ("auto", *SERVABLE_MODELS):
        raise dg.Failure(f"model must be 'auto' or one of {', '.join(SERVABLE_MODELS)}, got {config.model!r}")
    started = time.perf_counter()
    user_song = artifacts.read_csr(USER_SONG)
    playlist_song = artifacts.read_csr(PLAYLIST_SONG)
    with warehouse.connect(read_only=True) as con:
        model, reason, board = _choose_model(con, config.model)
        playlists = con.sql(
            "SELECT d.pid, trim(coalesce(p.name, '')) AS name FROM playlist_dictionary d "
            "LEFT JOIN stg_playlists p USING (pid) ORDER BY d.playlist_idx").to_arrow_table()
        users = con.sql("SELECT user_id FROM user_dictionary ORDER BY uid").to_arrow_table()
        songs = _song_names(con, user_song.shape[1])
        previews = _playlist_previews(con, PREVIEW_TRACKS)
    kind = BUNDLE_KINDS[model]
    if kind == VECTORS:
        arrays, cold, digest = _vector_arrays(model, artifacts)
    else:
        arrays, cold, digest = _ranker_arrays(artifacts, user_song)
    excluded = load_interactions(artifacts)
    popularity = artifacts.read(POPULARITY, "scores")["scores"]
    popular = np.argsort(-popularity, kind="stable")[:config.popular_list].astype(np.int64)
    n_users, n_playlists = excluded.shape
    if (playlists.num_rows, users.num_rows) != (n_playlists, n_users) or cold.size != n_users \
            or user_song.shape[0] != n_users or playlist_song.shape[0] != n_playlists:
        raise dg.Failure(f"the {model} model and the training interactions cover {cold.size} / {n_users} users x "
                         f"{n_playlists} playlists, the dictionaries {users.num_rows} x {playlists.num_rows}, the "
                         f"song matrices {user_song.shape[0]} x {playlist_song.shape[0]}: retrain the models")
    bundle_id = hashlib.sha1(model.encode() + digest + excluded.indices.tobytes()).hexdigest()[:16]
    for artifact, table in ((BUNDLE_PLAYLISTS, playlists), (BUNDLE_USERS, users), (BUNDLE_SONGS, songs),
                            (BUNDLE_PLAYLIST_TRACKS, previews)):
        with artifacts.writing(artifact) as tmp:
            pq.write_table(table, tmp)
    path = artifacts.write(BUNDLE, **arrays,
                                 excluded_indptr=excluded.indptr.astype(np.int64),
                                 excluded=excluded.indices.astype(np.int64), cold_start=cold,
                                 popular=popular, popular_scores=popularity[popular].astype(np.float32),
                                 user_song_indptr=user_song.indptr.astype(np.int64),
                                 user_song_indices=user_song.indices.astype(np.int32),
                                 playlist_song_indptr=playlist_song.indptr.astype(np.int64),
                                 playlist_song_indices=playlist_song.indices.astype(np.int32))
    info = {"model": model, "kind": kind, "chosen_by": reason, "bundle_id": bundle_id, "n_users": int(n_users),
            "n_playlists": int(n_playlists), "n_songs": int(user_song.shape[1])}
    if kind == VECTORS:
        info.update(indexed_playlists=int(arrays["indexed_playlists"].size), dim=int(arrays["user_vectors"].shape[1]))
    info["version"] = model_version(info)
    with artifacts.writing(BUNDLE_INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    context.log.info(f"serving {model} ({kind}; {reason}); {cold.sum()} of {cold.size} users on the cold-start path")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "model": model,
        "kind": kind,
        "version": info["version"],
        "chosen_by": reason,
        "candidates": dg.MetadataValue.md(markdown_table(board)),
        "bundle_id": bundle_id,
        "users": int(n_users),
        "playlists": int(n_playlists),
        "songs": int(user_song.shape[1]),
        **({"vector_dim": info["dim"], "indexed_playlists": info["indexed_playlists"]} if kind == VECTORS else
           {"scoring": "exact: SongRanker.score_all over every playlist (no vector index)"}),
        "cold_start_users": int(cold.sum()),
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


def _build_and_measure(context, artifacts: ArtifactStore, index_file: Artifact, index_info: Artifact,
                       items: np.ndarray, queries: np.ndarray, metric: str, config: IndexConfig, seed: int,
                       **info: object) -> tuple[dict, object]:
    """Build ``index_file``, tune/measure recall, then write ``index_info`` (metric, settings,
    recall, speeds, ``info``) last: the service reloads when it changes."""
    path = artifacts.file(index_file)
    seconds = build_annoy(items, path, metric=metric, n_trees=config.n_trees, seed=seed, n_jobs=config.build_threads)
    artifacts.publish(*index_file.path)
    index = load_annoy(path, items.shape[1], metric)
    if config.search_k == 0:
        report, tried = tune_search_k(index, items, queries, metric, config.n_trees, k=10,
                                      target=config.recall_target)
    else:
        report = measure_recall(index, items, queries, metric, k=10, search_k=config.search_k)
        tried = [report]
    index.unload()
    context.log.info(f"{index_file.name}: {items.shape[0]} items in {seconds:.2f}s, recall@10 {report.recall:.4f}, "
                     f"{report.index_qps:,.0f} q/s vs exact {report.exact_qps:,.0f} q/s")
    with artifacts.writing(index_info) as tmp:
        tmp.write_text(json.dumps({
            **info, "metric": metric, "dim": int(items.shape[1]), "n_trees": config.n_trees,
            "search_k": report.search_k, "recall_at_10": report.recall, "annoy_qps": report.index_qps,
            "exact_qps": report.exact_qps, "index_faster_than_exact": bool(report.index_qps >= report.exact_qps),
        }, indent=2))
    metadata = _index_metadata(path, seconds, items.shape[0], metric, config, report)
    metadata["search_k_tuning"] = dg.MetadataValue.md(markdown_table(
        [{"search_k": r.search_k, "recall@10": round(r.recall, 4), "queries/s": round(r.index_qps)} for r in tried]))
    return metadata, report


def _not_a_vector_bundle(context, artifacts: ArtifactStore, index_file: Artifact, index_info: Artifact,
                         info: dict) -> dg.MaterializeResult:
    """What a vector index asset does when the serving model has no vectors (the song ranker):
    no index; its .json names the bundle (so the service knows the bundle is complete and
    reloads) and says why; the recall check passes with nothing to compare, and says so."""
    reason = (f"the serving model {info['model']} is not a vector model (bundle kind {info['kind']}): it is scored "
              "exactly, so there is nothing to index; this index covers vector models (bpr, als) only")
    asset = index_file.asset
    artifacts.file(index_file).unlink(missing_ok=True)
    with artifacts.writing(index_info) as tmp:
        tmp.write_text(json.dumps({"bundle_id": info["bundle_id"], "index": None, "reason": reason}, indent=2))
    context.log.info(f"{asset}: skipped, {reason}")
    return dg.MaterializeResult(
        metadata={"model": info["model"], "indexed": False, "reason": reason},
        check_results=[dg.AssetCheckResult(
            check_name="recall_at_10_vs_exact", asset_key=asset, passed=True,
            description=f"no index to check: {reason}", metadata={"indexed": False})])


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"},
    deps=deps(BUNDLE, BUNDLE_INFO), check_specs=[_recall_spec("playlist_index")],
)
def playlist_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
                   settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the serving model's playlist vectors with the ``dot`` metric (bias folded
    in, so it ranks by the model's own score); recall@10 and queries/s measured against exact
    search for a seeded sample of users. Vector models only: for a song-ranker bundle nothing is
    built and the metadata says why."""
    info = json.loads(artifacts.file(BUNDLE_INFO).read_text())
    if info.get("kind", VECTORS) != VECTORS:
        return _not_a_vector_bundle(context, artifacts, PLAYLIST_INDEX, PLAYLIST_INDEX_INFO, info)
    bundle = artifacts.read(BUNDLE, "user_vectors", "playlist_vectors", "indexed_playlists", "cold_start")
    users, items = bundle["user_vectors"], bundle["playlist_vectors"][bundle["indexed_playlists"]]
    queries = users[_query_sample(bundle["cold_start"], config.recall_queries, settings.seed, 0x1DE7)]
    # the service uses the index only with the bundle it was built from
    metadata, report = _build_and_measure(context, artifacts, PLAYLIST_INDEX, PLAYLIST_INDEX_INFO, items, queries, "dot",
                                          config, settings.seed, bundle_id=info["bundle_id"])
    return dg.MaterializeResult(metadata={"model": info["model"], **metadata},
                                check_results=[_recall_check("playlist_index", report)])


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"},
    deps=deps(BUNDLE, BUNDLE_INFO), check_specs=[_recall_spec("user_index")],
)
def user_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
               settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the serving model's user vectors (``angular``: users alike in taste,
    whatever their activity level), for "listeners like you"; recall@10 against exact cosine.
    Vector models only: for a song-ranker bundle nothing is built and the metadata says why."""
    info = json.loads(artifacts.file(BUNDLE_INFO).read_text())
    if info.get("kind", VECTORS) != VECTORS:
        return _not_a_vector_bundle(context, artifacts, USER_INDEX, USER_INDEX_INFO, info)
    bundle = artifacts.read(BUNDLE, "user_vectors", "cold_start")
    users = bundle["user_vectors"]
    if info["model"] == "bpr":
        users = users[:, :-1]  # drop the constant column that carries the playlist bias
    queries = users[_query_sample(bundle["cold_start"], config.recall_queries, settings.seed, 0x05E4)]
    metadata, report = _build_and_measure(context, artifacts, USER_INDEX, USER_INDEX_INFO, users, queries, "angular",
                                          config, settings.seed, bundle_id=info["bundle_id"])
    return dg.MaterializeResult(metadata={"model": info["model"], **metadata},
                                check_results=[_recall_check("user_index", report)])


class RecommendationsConfig(dg.Config):
    k: int = Field(default=5, ge=1, le=100, description="Playlists recommended per user.")
    threads: int = Field(default=0, ge=0, description="Query threads; 0 = one per core.")


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb", "annoy"},
    # the whole bundle, through the index's .json (written last, after serving_model's files)
    deps=deps(PLAYLIST_INDEX_INFO),
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[dg.AssetCheckSpec("recommendations_valid", asset="recommendations", blocking=True,
                                   description="k distinct playlists per user, none owned or liked in train.")],
)
def recommendations(context: dg.AssetExecutionContext, config: RecommendationsConfig, artifacts: ArtifactStore,
                    warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Top-k playlists for every user from the serving bundle (index or exact scoring for vector
    models, exact scoring for the song ranker), excluding owned and train-liked playlists; cold
    users get the popularity list.
    DuckDB table ``recommendations`` (uid, user_id, rank, pid, score, model, cold_start)."""
    started = time.perf_counter()
    artifacts.sync_down(*BUNDLE_DIR)
    rec = Recommender(artifacts.local_root())
    n_users, k = len(rec.user_ids), config.k
    # Annoy answers one query per call and releases the GIL while searching, and exact scoring
    # is BLAS: either way one thread per core.
    chunks = np.array_split(np.arange(n_users), max(1, min(n_users, 64)))
    done = [0]
    lock = threading.Lock()

    def run(chunk: np.ndarray) -> list:
        out = rec.recommend_many(chunk, k)
        with lock:
            before, done[0] = done[0], done[0] + chunk.size
            # a line per quarter of the users, not per chunk: 4 lines whatever the size
            if done[0] * 4 // n_users > before * 4 // n_users:
                context.log.info(f"{done[0]:,}/{n_users:,} users ({done[0] / (time.perf_counter() - started):,.0f}/s)")
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
            "search": ("annoy" if rec.use_index else "exact (annoy was slower at the tuned recall)"
                       if rec.kind == VECTORS else "exact (song ranker)"),
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
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"annoy"},
    deps=deps(TRACK_EMBEDDINGS), check_specs=[_recall_spec("track_index")],
)
def track_index(context: dg.AssetExecutionContext, config: IndexConfig, artifacts: ArtifactStore,
                settings: PipelineSettings) -> dg.MaterializeResult:
    """Annoy index over the track embeddings (``angular``: item2vec/SVD similarity is cosine);
    item i is row i of ``tracks/track_embeddings.npz``. ``python -m spotify_assets.tracks similar``
    uses it when present; recall@10 against exact cosine on a seeded sample of tracks."""
    vectors = artifacts.read(TRACK_EMBEDDINGS, "vectors")["vectors"].astype(np.float32)
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x7AC5]))
    queries = vectors[np.sort(rng.choice(vectors.shape[0], size=min(config.recall_queries, vectors.shape[0]),
                                         replace=False))]
    metadata, report = _build_and_measure(context, artifacts, TRACK_INDEX, TRACK_INDEX_INFO, vectors, queries, "angular",
                                          config, settings.seed)
    return dg.MaterializeResult(metadata=metadata, check_results=[_recall_check("track_index", report)])


class RolloutConfig(dg.Config):
    candidate_share: float = Field(default=0.2, ge=0.0, le=1.0, description=(
        "Share of users (by a stable hash of the user id) a new bundle serves as the canary candidate while the "
        "champion serves the rest; canary_decision then promotes or rolls it back. 0 = no canary: a new bundle "
        "replaces the champion at once."))


@dg.asset(
    group_name=SERVE_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"json"},
    deps=["recommendations"],  # the DuckDB table: a bundle is deployed once its lists were written and checked
)
def serving_rollout(context: dg.AssetExecutionContext, config: RolloutConfig,
                    artifacts: ArtifactStore) -> dg.MaterializeResult:
    """Deploys the bundle the serve group just built (after its checks passed): an immutable copy
    under ``serve/deployed/<bundle_id>/`` and ``serve/rollout.json``, which the service follows.
    The first bundle becomes the champion; a later one becomes the canary candidate for
    ``candidate_share`` of users (or replaces the champion when the share is 0). Re-deploying
    the champion or the candidate changes nothing."""
    root = artifacts.local_root()
    artifacts.sync_down(*BUNDLE_DIR)
    built = json.loads(artifacts.file(BUNDLE_INFO).read_text())
    rollout = read_rollout(root)
    if rollout is not None and built["bundle_id"] in (rollout.champion.bundle_id,
                                                      rollout.candidate.bundle_id if rollout.candidate else None):
        action = f"{model_version(built)} is already deployed: nothing to do"
    else:
        deployed = deploy_bundle(root)
        if rollout is None or config.candidate_share == 0.0:
            replaced = None if rollout is None else rollout.champion.version
            base = rollout or Rollout(champion=deployed)
            rollout = replace(base, champion=deployed, candidate=None, candidate_share=0.0).with_event(
                "deployed as champion", version=deployed.version, replaced=replaced)
            action = f"{deployed.version} deployed as the champion" + (f" (replacing {replaced})" if replaced else "")
        else:
            superseded = rollout.candidate.version if rollout.candidate else None
            rollout = replace(rollout, candidate=deployed, candidate_share=config.candidate_share).with_event(
                "deployed as candidate", version=deployed.version, share=config.candidate_share,
                superseded=superseded)
            action = (f"{deployed.version} deployed as the canary candidate for {config.candidate_share:.0%} of users"
                      + (f" (superseding candidate {superseded})" if superseded else ""))
        write_rollout(root, rollout)
        artifacts.publish(*ROLLOUT.path)
    context.log.info(action)
    return dg.MaterializeResult(metadata={
        "action": action,
        "champion": rollout.champion.version,
        "candidate": rollout.candidate.version if rollout.candidate else "none",
        "candidate_share": rollout.candidate_share,
        "rollout": dg.MetadataValue.path(str(ROLLOUT.under(root))),
        "history": dg.MetadataValue.md(markdown_table(_history_rows(rollout))),
    })


def _history_rows(rollout: Rollout, last: int = 10) -> list[dict]:
    return [{"at (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"])), "event": e["event"],
             "details": ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "event") and v is not None)}
            for e in rollout.history[-last:]]
