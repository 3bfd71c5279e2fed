"""Track-level models (issue 7): next-track examples with a seeded playlist split, item2vec
track embeddings, similar and duplicate tracks, a 2-D embedding map, and the RecSys
Challenge 2018 playlist-continuation evaluation.

Every asset reads the marts (``playlist_track_ids``, ``track_dictionary``, ``stg_playlists``),
calls a pure function from :mod:`spotify_assets.tracks` and writes a DuckDB table (one
transaction) or an artifact (atomic rename).
"""

import base64
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import TRACK_EMBEDDINGS, TRACK_INDEX, TRACK_MAP_PLOT, TWO_TOWER, deps
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, PipelineSettings
from spotify_assets.tracks import continuation as cont
from spotify_assets.tracks.challenge import (
    METRICS,
    ALSSettings,
    baseline_rankers,
    build_challenge_set,
    evaluate_models,
    model_ranker,
    results_markdown,
    select_als,
    target_verdicts,
)
from spotify_assets.tracks.duplicates import (
    CONFIRMED,
    FLAGGED,
    UNVERIFIED,
    duplicate_groups,
    null_cosine_threshold,
    pair_cosines,
    verdicts,
)
from spotify_assets.tracks.embedding_map import GENRE_KEYWORDS, name_genres, pca_2d, render_map, track_genres
from spotify_assets.tracks.playlists import PlaylistData, load_playlists
from spotify_assets.tracks.similar import TrackEmbeddings, similar_tracks, track_details
# the torch models load in the steps that train or run them (preloaded in the step processes),
# not with the definitions
from spotify_assets.tracks.two_tower_config import TwoTowerConfig

TRACKS = "tracks"
CONTEXT = 5


# --------------------------------------------------------------------------------------
# shared readers
# --------------------------------------------------------------------------------------


def _playlists(warehouse: DuckDBWarehouse, **parts: bool) -> PlaylistData:
    """:func:`load_playlists` on a read-only connection; a missing input is a Failure."""
    with warehouse.connect(read_only=True) as con:
        try:
            return load_playlists(con, **parts)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc


def _embeddings(artifacts: ArtifactStore) -> TrackEmbeddings:
    return TrackEmbeddings.from_arrays(artifacts.read(TRACK_EMBEDDINGS, "vectors", "track_ids"))


def _md_rows(rows: list[dict], digits: int = 4) -> str:
    return markdown_table([{k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()} for r in rows])


# --------------------------------------------------------------------------------------
# next_track_examples
# --------------------------------------------------------------------------------------


class NextTrackConfig(dg.Config):
    val_share: float = 0.1
    """Share of playlists in val (used to pick the embedding method)."""
    test_share: float = 0.1
    """Share of playlists in test (the continuation evaluation)."""


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"},
          deps=["playlist_track_ids", "track_dictionary"], op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def next_track_examples(context: dg.AssetExecutionContext, config: NextTrackConfig, warehouse: DuckDBWarehouse,
                        settings: PipelineSettings) -> dg.MaterializeResult:
    """Training examples for a next-track model: every window of 5 consecutive tracks of a
    playlist (``context_1`` oldest .. ``context_5``) and the track that follows
    (``next_track_id``), as dense track ids. Playlists are split train/val/test by a seeded
    permutation (``track_playlist_splits``, written in the same transaction), so that every
    example of a playlist lands in its playlist's split and the track models downstream are
    evaluated on playlists they never saw."""
    started = time.perf_counter()
    data = _playlists(warehouse, with_split=False)
    split = cont.split_playlists(data.pids, settings.seed, config.val_share, config.test_share)
    seq, offset, windows = cont.next_track_examples(data.indptr, data.tracks, context=CONTEXT)
    names = np.asarray(cont.SPLIT_NAMES)
    examples = pa.table({
        "pid": pa.array(data.pids[seq], pa.int64()),
        "split": pa.array(names[split[seq]]),
        "position": pa.array(offset, pa.int32()),
        **{f"context_{i + 1}": pa.array(windows[:, i], pa.int32()) for i in range(CONTEXT)},
        "next_track_id": pa.array(windows[:, CONTEXT], pa.int32()),
    })
    splits = pa.table({"pid": pa.array(data.pids, pa.int64()), "split": pa.array(names[split]),
                       "n_tracks": pa.array(np.diff(data.indptr), pa.int32())})
    with warehouse.connect() as con:
        replace_tables(con, {"next_track_examples": examples, "track_playlist_splits": splits})
        meta = table_metadata(con, "next_track_examples")
        per_split = con.execute(
            """SELECT s.split, count(DISTINCT s.pid) AS playlists, count(e.pid) AS examples
               FROM track_playlist_splits s LEFT JOIN next_track_examples e USING (pid)
               GROUP BY s.split ORDER BY min(CASE s.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END)"""
        ).fetchall()
    summary = [{"split": s, "playlists": int(p), "examples": int(e)} for s, p, e in per_split]
    context.log.info(f"{examples.num_rows:,} next-track examples from {data.pids.size:,} playlists")
    return dg.MaterializeResult(metadata={
        **meta,
        "splits": dg.MetadataValue.md(markdown_table(summary)),
        "playlists": int(data.pids.size),
        "playlists_without_examples": int((np.diff(data.indptr) <= CONTEXT).sum()),
        "seed": settings.seed,
        "seconds": round(time.perf_counter() - started, 3),
    })


# --------------------------------------------------------------------------------------
# track_embeddings
# --------------------------------------------------------------------------------------


class TrackEmbeddingConfig(dg.Config):
    dim: int = 32
    """Embedding size."""
    window: int = 5
    """Largest distance between a track and a context track (word2vec's dynamic window)."""
    negatives: int = 5
    """Noise tracks per (track, context) pair."""
    min_count: int = 5
    """Tracks with fewer occurrences in train playlists get no embedding (dropped and counted)."""
    epochs: int = 2
    batch_size: int = 16384
    """Pairs per fused row-wise-Adagrad step."""
    lr: float = 0.3
    subsample: float = 1e-4
    """word2vec's frequent-track subsampling threshold (0 disables)."""
    compare_ppmi_svd: bool = True
    """Also fit PPMI + truncated SVD and keep whichever ranks val continuations better (NDCG)."""
    val_queries: int = 1000
    """Val playlists (seeded sample) that score the candidates; 0 = all."""
    accelerator: str = "auto"
    """'auto' trains on CUDA when torch sees a GPU, else CPU."""


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch"},
          deps=["next_track_examples", "playlist_track_ids", "track_dictionary"])
def track_embeddings(context: dg.AssetExecutionContext, config: TrackEmbeddingConfig, warehouse: DuckDBWarehouse,
                     artifacts: ArtifactStore, settings: PipelineSettings) -> dg.MaterializeResult:
    """item2vec: skip-gram with negative sampling over the *train* playlists' track sequences
    (PyTorch, GPU when available), tracks below ``min_count`` dropped. Optionally a PPMI +
    truncated SVD embedding of the same co-occurrences is fitted too, and the one whose
    nearest neighbours continue the val playlists better (NDCG of 500 tracks from 5 seeds)
    is kept. Saved as ``tracks/track_embeddings.npz``: ``vectors`` float32 (n, d)
    L2-normalised, ``track_ids`` int64 (n,) dense track ids."""
    from spotify_assets.tracks.item2vec import (
        Item2VecConfig,
        build_vocabulary,
        cooccurrence_matrix,
        l2_normalize,
        ppmi_svd,
        train_item2vec,
    )

    started = time.perf_counter()
    data = _playlists(warehouse)
    indptr, tracks = data.part(cont.TRAIN)
    vocab = build_vocabulary(tracks, data.n_tracks, config.min_count)
    if vocab.size < 2:
        raise dg.Failure(f"only {vocab.size} tracks occur {config.min_count}+ times in train playlists: "
                         "lower min_count")
    tokens = vocab.encode(tracks)
    keep = tokens >= 0
    seq_indptr, seq_tokens = np.r_[0, np.cumsum(keep)][indptr].astype(np.int64), tokens[keep]
    popularity = np.bincount(tracks, minlength=data.n_tracks)
    val = data.queries(cont.VAL, config.val_queries, settings.seed)
    track_artist = data.track_artist()

    def val_score(vectors: np.ndarray) -> dict[str, float]:
        if val.size == 0:
            return {"queries": 0, "ndcg": float("nan"), "r_precision": float("nan"), "clicks": float("nan")}
        ranked = cont.embedding_rank(vectors, vocab.track_ids, data.n_tracks, val.seeds, 500, popularity)
        return cont.evaluate_ranking(ranked, val, track_artist)

    i2v_config = Item2VecConfig(dim=config.dim, window=config.window, negatives=config.negatives,
                                epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                subsample=config.subsample, seed=settings.seed)
    result = train_item2vec(seq_indptr, seq_tokens, vocab.counts, i2v_config, accelerator=config.accelerator)
    candidates = {"item2vec": (l2_normalize(result.vectors), result.seconds)}
    if config.compare_ppmi_svd:
        t = time.perf_counter()
        cooc = cooccurrence_matrix(seq_indptr, seq_tokens, vocab.size, config.window)
        candidates["ppmi_svd"] = (l2_normalize(ppmi_svd(cooc, config.dim, seed=settings.seed)), time.perf_counter() - t)
    trials = []
    for method, (vectors, seconds) in candidates.items():
        scores = val_score(vectors)
        trials.append({"method": method, "val_ndcg": scores["ndcg"], "val_r_precision": scores["r_precision"],
                       "val_clicks": scores["clicks"], "fit_seconds": round(seconds, 2)})
        context.log.info(f"{method}: val NDCG {scores['ndcg']:.4f} ({seconds:.1f}s)")
    scored = [t for t in trials if np.isfinite(t["val_ndcg"])]
    best = max(scored, key=lambda t: t["val_ndcg"])["method"] if scored else "item2vec"
    vectors = candidates[best][0]
    path = artifacts.write(TRACK_EMBEDDINGS, vectors=vectors, track_ids=vocab.track_ids.astype(np.int64))
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "method": best,
        "dagster/row_count": int(vocab.size),
        "dim": config.dim,
        "tracks_embedded": int(vocab.size),
        "tracks_dropped_below_min_count": vocab.dropped_tracks,
        "occurrences_dropped": vocab.dropped_tokens,
        "train_playlists": int(indptr.size - 1),
        "val_queries": int(val.size),
        "comparison": dg.MetadataValue.md(_md_rows(trials)),
        "item2vec_pairs_trained": int(result.pairs_trained),
        "item2vec_pairs_per_second": round(result.pairs_per_second),
        "item2vec_loss": dg.MetadataValue.md(_md_rows(result.history)),
        "device": result.device,
        "config": dg.MetadataValue.json({**asdict(i2v_config), "min_count": config.min_count}),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
    })


# --------------------------------------------------------------------------------------
# similar_tracks
# --------------------------------------------------------------------------------------


class SimilarTracksConfig(dg.Config):
    k: int = 10
    """Neighbours per track."""
    top_tracks: int = 2000
    """The most popular embedded tracks whose neighbours are stored (0 = all)."""
    examples: int = 3
    """Popular tracks shown with their neighbours in the metadata."""


@dg.asset(name="similar_tracks", group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS,
          kinds={"duckdb", "numpy"}, deps=[*deps(TRACK_EMBEDDINGS, TRACK_INDEX), "track_dictionary"],
          op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def similar_tracks_asset(context: dg.AssetExecutionContext, config: SimilarTracksConfig, warehouse: DuckDBWarehouse,
                         artifacts: ArtifactStore) -> dg.MaterializeResult:
    """The ``k`` nearest tracks by embedding cosine of the most popular embedded tracks
    (table ``similar_tracks``: track_id, rank, similar_track_id, cosine), through the
    serving Annoy index when it exists, exact otherwise; examples for a few hits in the
    metadata. The same lookup is ``python -m spotify_assets.tracks similar "<name>"``."""
    started = time.perf_counter()
    embeddings = _embeddings(artifacts)
    index_path = artifacts.file(TRACK_INDEX)
    with warehouse.connect() as con:
        popularity = con.execute("SELECT track_id, n_playlists FROM track_dictionary").fetchnumpy()
        pop = np.zeros(int(np.max(popularity["track_id"], initial=-1)) + 1, np.int64)
        pop[np.asarray(popularity["track_id"], np.int64)] = np.asarray(popularity["n_playlists"], np.int64)
        order = np.lexsort((embeddings.track_ids, -pop[embeddings.track_ids]))
        queries = embeddings.track_ids[order[: config.top_tracks] if config.top_tracks > 0 else order]
        ids, sims, method = similar_tracks(embeddings, queries, config.k, index_path)
        found = ids >= 0
        table = pa.table({
            "track_id": pa.array(np.repeat(queries, config.k)[found.ravel()], pa.int32()),
            "rank": pa.array(np.tile(np.arange(1, config.k + 1), queries.size)[found.ravel()], pa.int16()),
            "similar_track_id": pa.array(ids[found], pa.int32()),
            "cosine": pa.array(sims[found], pa.float32()),
        })
        replace_tables(con, {"similar_tracks": table})
        meta = table_metadata(con, "similar_tracks")
        details = track_details(con, np.r_[queries[: config.examples], ids[: config.examples].ravel()])
    blocks = []
    for q in range(min(config.examples, queries.size)):
        name, artist, n = details[int(queries[q])]
        rows = [{"rank": r + 1, "track": details[int(t)][0], "artist": details[int(t)][1],
                 "cosine": round(float(s), 3), "playlists": details[int(t)][2]}
                for r, (t, s) in enumerate(zip(ids[q], sims[q])) if t >= 0]
        blocks.append(f"**{name} — {artist}** ({n} playlists)\n\n{markdown_table(rows)}")
    return dg.MaterializeResult(metadata={
        **meta,
        "examples": dg.MetadataValue.md("\n\n".join(blocks) or "_(no tracks)_"),
        "method": method,
        "query_tracks": int(queries.size),
        "k": config.k,
        "mean_cosine_at_1": round(float(np.nanmean(sims[:, 0])), 4) if sims.size else 0.0,
        "seconds": round(time.perf_counter() - started, 3),
    })


# --------------------------------------------------------------------------------------
# duplicate_tracks
# --------------------------------------------------------------------------------------


class DuplicateTracksConfig(dg.Config):
    null_quantile: float = 0.95
    """A key-matched pair is confirmed when its cosine is above this quantile of random pairs'."""
    examples: int = 10
    """Pairs shown in the metadata."""


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"},
          deps=[*deps(TRACK_EMBEDDINGS), "track_dictionary"], op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def duplicate_tracks(context: dg.AssetExecutionContext, config: DuplicateTracksConfig, warehouse: DuckDBWarehouse,
                     artifacts: ArtifactStore, settings: PipelineSettings) -> dg.MaterializeResult:
    """Tracks that are the same song under different URIs: equal canonical song keys (case,
    accents, spacing and version suffixes like " - Radio Edit" or "(feat. X)" removed; remixes
    kept apart), each pair confirmed by embedding cosine above the ``null_quantile`` of random
    pairs, flagged below it, or unverified when a track is too rare to be embedded. Table
    ``duplicate_tracks``: one row per group member with its canonical (most popular) track,
    key, cosine to the canonical track and verdict."""
    started = time.perf_counter()
    embeddings = _embeddings(artifacts)
    with warehouse.connect() as con:
        rows = con.execute("SELECT track_id, track_uri, track_name, artist_name, n_playlists FROM track_dictionary "
                           "ORDER BY track_id").fetchnumpy()
        ids = np.asarray(rows["track_id"], np.int64)
        groups = duplicate_groups(ids, list(rows["track_name"]), list(rows["artist_name"]), rows["n_playlists"])
        threshold = null_cosine_threshold(embeddings.vectors, config.null_quantile, seed=settings.seed)
        cosine = pair_cosines(embeddings.vectors, embeddings.track_ids, groups.canonical, groups.track_ids)
        verdict = verdicts(cosine, threshold)
        canonical_member = groups.track_ids == groups.canonical
        verdict[canonical_member] = "canonical"
        cosine[canonical_member] = 1.0
        at = np.searchsorted(ids, groups.track_ids)
        table = pa.table({
            "group_id": pa.array(groups.group, pa.int32()),
            "track_id": pa.array(groups.track_ids, pa.int32()),
            "canonical_track_id": pa.array(groups.canonical, pa.int32()),
            "track_uri": pa.array(np.asarray(rows["track_uri"], dtype=object)[at].tolist(), pa.string()),
            "track_name": pa.array(np.asarray(rows["track_name"], dtype=object)[at].tolist(), pa.string()),
            "artist_name": pa.array(np.asarray(rows["artist_name"], dtype=object)[at].tolist(), pa.string()),
            "n_playlists": pa.array(np.asarray(rows["n_playlists"], np.int64)[at], pa.int32()),
            "canonical_key": pa.array(groups.keys, pa.string()),
            "cosine": pa.array(np.where(np.isnan(cosine), None, cosine).tolist(), pa.float32()),
            "verdict": pa.array(verdict.tolist(), pa.string()),
        })
        replace_tables(con, {"duplicate_tracks": table})
        meta = table_metadata(con, "duplicate_tracks")
        examples = con.execute(
            """SELECT d.track_name AS duplicate, c.track_name AS canonical, d.artist_name AS artist,
                      round(d.cosine, 3) AS cosine, d.verdict
               FROM duplicate_tracks d JOIN duplicate_tracks c ON c.track_id = d.canonical_track_id
               WHERE d.track_id <> d.canonical_track_id
               ORDER BY d.verdict = 'unverified', d.n_playlists + c.n_playlists DESC, d.track_id LIMIT ?""",
            [config.examples]).fetchall()
    pair_verdicts = verdict[~canonical_member]
    counts = {v: int((pair_verdicts == v).sum()) for v in (CONFIRMED, FLAGGED, UNVERIFIED)}
    return dg.MaterializeResult(metadata={
        **meta,
        "groups": groups.n_groups,
        "duplicate_pairs": int(pair_verdicts.size),
        **{f"pairs_{k}": v for k, v in counts.items()},
        "cosine_threshold": round(threshold, 4),
        "examples": dg.MetadataValue.md(markdown_table(
            [{"duplicate": a, "canonical": b, "artist": c, "cosine": d, "verdict": e} for a, b, c, d, e in examples])),
        "seconds": round(time.perf_counter() - started, 3),
    })


# --------------------------------------------------------------------------------------
# track_embedding_map
# --------------------------------------------------------------------------------------


class EmbeddingMapConfig(dg.Config):
    top_tracks: int = 2000
    """The most popular embedded tracks drawn."""
    top_genres: int = 10
    """Genres with their own colour; the rest are grey."""


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"},
          deps=[*deps(TRACK_EMBEDDINGS), "stg_playlists", "playlist_track_ids"])
def track_embedding_map(context: dg.AssetExecutionContext, config: EmbeddingMapConfig, warehouse: DuckDBWarehouse,
                        artifacts: ArtifactStore) -> dg.MaterializeResult:
    """A PNG scatter of the most popular tracks' embeddings projected on their first two
    principal components, each track coloured by the genre its playlists' names suggest
    ("country roads", "workout", "chill vibes" ...; majority vote over its playlists)."""
    started = time.perf_counter()
    embeddings = _embeddings(artifacts)
    with warehouse.connect(read_only=True) as con:
        names = con.execute("SELECT pid, name FROM stg_playlists ORDER BY pid").fetchnumpy()
        rows = con.execute("SELECT pid, track_id FROM playlist_track_ids").fetchnumpy()
    pid_names = np.asarray(names["pid"], np.int64)
    genre_of_playlist = name_genres(list(names["name"]))
    row_pid = np.asarray(rows["pid"], np.int64)
    row_track = np.asarray(rows["track_id"], np.int64)
    at = np.minimum(np.searchsorted(pid_names, row_pid), pid_names.size - 1)  # stg_playlists holds every pid
    row_genre = np.where(pid_names[at] == row_pid, genre_of_playlist[at], -1)
    counts = np.bincount(row_track, minlength=int(embeddings.track_ids.max(initial=0)) + 1)
    order = np.lexsort((embeddings.track_ids, -counts[embeddings.track_ids]))[: config.top_tracks]
    coords, explained = pca_2d(embeddings.vectors[order])
    genre = track_genres(row_genre, row_track, embeddings.track_ids[order])
    with artifacts.writing(TRACK_MAP_PLOT) as tmp:
        title = f"{order.size:,} most popular tracks: embeddings on 2 principal components, by playlist-name genre"
        legend = render_map(coords, genre, tmp, title, top_genres=config.top_genres, explained=explained)
    path = artifacts.file(TRACK_MAP_PLOT)
    encoded = base64.b64encode(path.read_bytes()).decode()
    labelled = int((genre >= 0).sum())
    return dg.MaterializeResult(metadata={
        "map": dg.MetadataValue.md(f"![track embedding map](data:image/png;base64,{encoded})\n\n`{path}`"),
        "path": dg.MetadataValue.path(str(path)),
        "tracks_drawn": int(order.size),
        "tracks_with_a_genre": labelled,
        "playlists_with_a_genre_name": int((genre_of_playlist >= 0).sum()),
        "legend": dg.MetadataValue.md(markdown_table([{"genre": k, "tracks": v} for k, v in legend.items()])),
        "explained_variance": dg.MetadataValue.json([round(float(x), 4) for x in explained]),
        "genres_known": len(GENRE_KEYWORDS),
        "png_bytes": int(path.stat().st_size),
        "seconds": round(time.perf_counter() - started, 3),
    })


# --------------------------------------------------------------------------------------
# two_tower_model
# --------------------------------------------------------------------------------------


#: the model's defaults: the run config's come from here, so the asset and the benchmark train alike
_TWO_TOWER = TwoTowerConfig()


class TwoTowerModelConfig(dg.Config):
    """The two-tower model's settings (:class:`~spotify_assets.tracks.two_tower.TwoTowerConfig`,
    whose defaults these are); they train in well under a minute on the committed sample on one
    CPU core. The descriptions are what the launchpad shows."""

    dim: int = Field(default=_TWO_TOWER.dim, description="Query and track vector size.")
    hidden: int = Field(default=_TWO_TOWER.hidden, description="Width of the playlist and track MLPs.")
    name_buckets: int = Field(default=_TWO_TOWER.name_buckets, description="Rows of the hashed name n-gram table.")
    batch_size: int = Field(default=_TWO_TOWER.batch_size, description="Examples per step.")
    positives_per_example: int = Field(default=_TWO_TOWER.positives_per_example, description=(
        "Held-out tracks each example must find (all others in the step are its negatives)."))
    uniform_negatives: int = Field(default=_TWO_TOWER.uniform_negatives, description=(
        "Extra negatives per step, uniform over the vocabulary (log-frequency corrected)."))
    max_epochs: int = Field(default=_TWO_TOWER.max_epochs, description="Epochs at most.")
    patience: int = Field(default=_TWO_TOWER.patience, description="Epochs without a better val NDCG before stopping.")
    examples_per_playlist: int = Field(default=_TWO_TOWER.examples_per_playlist,
                                       description="Rounds over the training playlists per epoch.")
    title_dropout: float = Field(default=_TWO_TOWER.title_dropout, description=(
        'Share of examples with context tracks whose name is hidden (the "no title" categories).'))
    random_context_share: float = Field(default=_TWO_TOWER.random_context_share, description=(
        'Share of examples whose context is random positions (the "random" categories).'))
    lr: float = Field(default=_TWO_TOWER.lr, description="Adam step of the dense layers.")
    sparse_lr: float = Field(default=_TWO_TOWER.sparse_lr, description="Row-wise Adagrad step of the embedding tables.")
    cpu_threads: int = Field(default=_TWO_TOWER.cpu_threads, description="Torch threads on CPU (0 = torch's default).")
    val_per_category: int = Field(default=100, description=(
        "Val playlists per challenge category for early stopping; 0 = all."))
    accelerator: str = Field(default="auto", description="'auto' trains on CUDA when torch sees a GPU, else CPU.")


def _catalogue(warehouse: DuckDBWarehouse) -> Callable[[np.ndarray], dict[str, list[str]]]:
    """track ids -> {"track_uri", "track_name", "artist_name"} from track_dictionary."""

    def lookup(track_ids: np.ndarray) -> dict[str, list[str]]:
        with warehouse.connect(read_only=True) as con:
            rows = con.execute("SELECT track_id, track_uri, track_name, artist_name FROM track_dictionary "
                               "ORDER BY track_id").fetchnumpy()
        at = np.searchsorted(np.asarray(rows["track_id"], np.int64), track_ids)
        return {c: [str(v) for v in np.asarray(rows[c], dtype=object)[at].tolist()]
                for c in ("track_uri", "track_name", "artist_name")}

    return lookup


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"pytorch"},
          deps=["next_track_examples", "playlist_track_ids", "stg_playlists", "stg_playlist_tracks",
                "track_dictionary"])
def two_tower_model(context: dg.AssetExecutionContext, config: TwoTowerModelConfig, warehouse: DuckDBWarehouse,
                    artifacts: ArtifactStore, settings: PipelineSettings) -> dg.MaterializeResult:
    """A two-tower retrieval model (PyTorch Lightning) for playlist continuation: a playlist
    tower over the playlist name's hashed word and character n-grams and its tracks (and
    their artists), a track tower over track id, artist, album, duration and popularity
    buckets; sampled softmax over in-batch and uniform negatives with a log-frequency
    correction, trained on the *train* playlists only, early-stopped on the val playlists'
    challenge NDCG. A playlist with only a name gets recommendations from the name. Saved
    atomically as ``tracks/two_tower.pt`` (weights, vocabulary, track names for serving;
    ``torch.load(weights_only=True)``); served by ``POST /api/playlist/continue``."""
    from spotify_assets.tracks.two_tower import train_two_tower

    started = time.perf_counter()
    data = _playlists(warehouse, with_names=True, with_features=True)
    train_indptr, train_tracks = data.part(cont.TRAIN)
    known = np.bincount(train_tracks, minlength=data.n_tracks) > 0
    val = build_challenge_set(data.indptr, data.tracks, data.split == cont.VAL, known, settings.seed + 1,
                              per_category=config.val_per_category)
    # every TwoTowerConfig field the run config sets (the rest keep the model's defaults)
    model_config = TwoTowerConfig(seed=settings.seed, **{f.name: getattr(config, f.name) for f in fields(TwoTowerConfig)
                                                         if f.name in TwoTowerModelConfig.model_fields})
    context.log.info(f"two-tower: {train_indptr.size - 1:,} train playlists, {val.size:,} val queries")
    result = train_two_tower(train_indptr, train_tracks, data.part_names(cont.TRAIN), data.features, model_config,
                             artifacts.file(TWO_TOWER), val=(val, data.names), track_artist=data.track_artist(),
                             catalogue=_catalogue(warehouse), accelerator=config.accelerator,
                             log=context.log.info)
    location = artifacts.publish(*TWO_TOWER.path)
    history = [{k: v for k, v in row.items()} for row in result.history]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(location),
        "vocabulary_tracks": result.vocab_size,
        "train_playlists": result.train_playlists,
        "val_queries": int(val.size),
        "best_epoch": result.best_epoch,
        "best_val_ndcg": round(result.best_val_ndcg, 4) if np.isfinite(result.best_val_ndcg) else "n/a",
        "epochs_run": result.epochs_run,
        "history": dg.MetadataValue.md(_md_rows(history)),
        "examples_per_second": round(result.examples_per_second),
        "device": result.device,
        "config": dg.MetadataValue.json(asdict(model_config)),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
    })


# --------------------------------------------------------------------------------------
# playlist_continuation_eval
# --------------------------------------------------------------------------------------


class ContinuationEvalConfig(dg.Config):
    per_category: int = 1000
    """Test playlists drawn per challenge category (the challenge's 1,000); 0 = all qualifying."""
    min_held_out: int = 1
    """Held-out tracks a playlist needs beyond its seeds to qualify for a category."""
    min_queries: int = 10
    """A category with fewer qualifying test playlists is skipped (and reported)."""
    als_factors: int = 32
    als_iterations: int = 8
    als_alphas: list[float] = [1.0, 10.0, 40.0]
    """ALS confidence scales tried; the one with the best val NDCG is evaluated on test."""
    als_regularization: float = 0.05
    val_per_category: int = 100
    """Val playlists per category for picking ALS's alpha."""


def _bench_table() -> str | None:
    """The committed bench-scale table (``benchmarks/results/continuation_bench.md``), if present."""
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "continuation_bench.md"
    return path.read_text(encoding="utf-8") if path.exists() else None


@dg.asset(group_name=TRACKS, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb", "numpy"},
          deps=[*deps(TRACK_EMBEDDINGS, TWO_TOWER), "next_track_examples", "playlist_track_ids", "stg_playlists"],
          op_tags=DUCKDB_OP_TAGS, pool=DUCKDB_POOL)
def playlist_continuation_eval(context: dg.AssetExecutionContext, config: ContinuationEvalConfig,
                               warehouse: DuckDBWarehouse, artifacts: ArtifactStore,
                               settings: PipelineSettings) -> dg.MaterializeResult:
    """Playlist continuation as the RecSys Challenge 2018 ran it, on the *test* playlists
    (split by playlist; no model trained on them): ten categories from "title only" to
    "title + 100 random tracks", 500 tracks per playlist, every model on the same queries:
    popularity, co-occurrence, item2vec, ALS (fitted on train, queries folded in; alpha
    picked on val) and the two-tower model. R-precision with the challenge's artist credit,
    NDCG, clicks and precision@100 per category and overall (table
    ``playlist_continuation_eval``), the two-tower targets, and the committed bench-scale
    table in the metadata."""
    from spotify_assets.tracks.two_tower import load_two_tower

    started = time.perf_counter()
    data = _playlists(warehouse, with_names=True)
    embeddings = _embeddings(artifacts)
    model = load_two_tower(artifacts.file(TWO_TOWER))
    train_indptr, train_tracks = data.part(cont.TRAIN)
    train = cont.playlist_track_matrix(train_indptr, train_tracks, data.n_tracks)
    known = np.asarray(train.sum(axis=0)).ravel() > 0
    test = build_challenge_set(data.indptr, data.tracks, data.split == cont.TEST, known, settings.seed,
                               per_category=config.per_category, min_held_out=config.min_held_out,
                               min_queries=config.min_queries)
    if test.size == 0:
        raise dg.Failure(f"no challenge category has {config.min_queries}+ qualifying test playlists: "
                         "raise test_share or lower min_queries")
    track_artist = data.track_artist()
    val = build_challenge_set(data.indptr, data.tracks, data.split == cont.VAL, known, settings.seed + 1,
                              per_category=config.val_per_category)
    grid = [ALSSettings(factors=config.als_factors, iterations=config.als_iterations, alpha=a,
                        regularization=config.als_regularization) for a in config.als_alphas]
    als, als_trials = select_als(train, val, track_artist, grid, seed=settings.seed) if val.size else (grid[0], [])
    context.log.info(f"ALS alpha {als.alpha} by val NDCG; {test.size:,} test queries, skipped {test.skipped}")
    rankers = baseline_rankers(train, item2vec=(embeddings.vectors, embeddings.track_ids), als=als,
                               seed=settings.seed)
    rankers["two_tower"] = model_ranker(model, data.names)
    rows = evaluate_models(rankers, test, track_artist, log=context.log.info)
    columns = ["category", "model", "queries", *[m for m, _, _ in METRICS], "seconds"]
    table = pa.table({c: [r[c] for r in rows] for c in columns})
    with warehouse.connect() as con:
        replace_tables(con, {"playlist_continuation_eval": table})
        meta = table_metadata(con, "playlist_continuation_eval")
    verdicts = target_verdicts(rows)
    bench = _bench_table()
    return dg.MaterializeResult(metadata={
        **meta,
        "results": dg.MetadataValue.md(results_markdown(rows)),
        "two_tower_targets": dg.MetadataValue.md(
            f"{sum(v['met'] for v in verdicts)} of {len(verdicts)} met (the targets are set at bench scale)\n\n"
            + _md_rows(verdicts)),
        "bench_results": dg.MetadataValue.md(bench or "_benchmarks/results/continuation_bench.md not found_"),
        "test_queries": int(test.size),
        "skipped_categories": dg.MetadataValue.json(test.skipped),
        "held_out_tracks_per_query": round(float(np.diff(test.truth_indptr).mean()), 1),
        "als_trials": dg.MetadataValue.md(_md_rows(als_trials)),
        "train_playlists": int(train.shape[0]),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
    })
