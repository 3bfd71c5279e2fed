"""The tracks group on `tiny` data through dg.materialize: every asset and check, item2vec's
genre structure and duplicate precision against the generator's truth (tests read truth/,
assets never do), the map image, the two-tower model trained on train playlists only, the
challenge-protocol continuation table, and same seed -> same outputs."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from spotify_assets.contract import TRACK_EMBEDDINGS, TRACK_MAP_PLOT, TWO_TOWER
from spotify_assets.defs.ingest.assets import mpd_slice_tables
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.defs.tracks import assets as track_assets
from spotify_assets.defs.tracks import checks as track_checks
from spotify_assets.tracks.challenge import CATEGORIES
from spotify_assets.tracks.two_tower import load_two_tower, popularity_buckets
from spotify_assets_tests.test_label_split_assets import run_chain

MARTS = {"stg_playlist_tracks", "stg_playlists", "track_dictionary", "artist_dictionary", "album_dictionary",
         "playlist_track_ids"}
UPSTREAM = [mpd_slice_tables, *[a for a in sql_model_assets if a.key.to_user_string() in MARTS]]
TRACKS = [track_assets.next_track_examples, track_assets.track_embeddings, track_assets.similar_tracks_asset,
          track_assets.duplicate_tracks, track_assets.track_embedding_map, track_assets.two_tower_model,
          track_assets.playlist_continuation_eval]
CHECKS = [track_checks.next_track_examples_valid, track_checks.track_embeddings_valid,
          track_checks.duplicates_mostly_confirmed, track_checks.track_embedding_map_is_png,
          track_checks.item2vec_beats_popularity, track_checks.two_tower_beats_popularity_from_names,
          track_checks.two_tower_model_ranks]
# tiny has 500 playlists: embed tracks seen 3+ times, with more epochs of smaller steps and
# lighter subsampling than the sample's defaults; item2vec only, so the genre test is about it
MIN_COUNT = 3
RUN_CONFIG = {"ops": {
    "track_embeddings": {"config": {
        "min_count": MIN_COUNT, "compare_ppmi_svd": False, "epochs": 10, "subsample": 1e-3, "batch_size": 2048,
        "lr": 0.05}},
    # tiny has 400 train playlists: more rounds per epoch, smaller steps
    "two_tower_model": {"config": {"batch_size": 64, "examples_per_playlist": 8, "max_epochs": 5, "dim": 32,
                                   "hidden": 64, "name_buckets": 4096}},
    "playlist_continuation_eval": {"config": {"als_alphas": [1.0, 10.0]}},
}}
TABLES = ["next_track_examples", "track_playlist_splits", "similar_tracks", "duplicate_tracks",
          "playlist_continuation_eval"]


def warehouse(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_two_tower_run_config_defaults_are_the_models() -> None:
    """The asset's launchpad defaults are TwoTowerConfig's, field by field, so the asset and
    ``benchmarks.continuation`` train with the same settings unless told otherwise."""
    from dataclasses import fields

    from spotify_assets.tracks.two_tower import TwoTowerConfig

    model, run_config = TwoTowerConfig(), track_assets.TwoTowerModelConfig.model_fields
    shared = [f.name for f in fields(TwoTowerConfig) if f.name in run_config]
    # seed comes from PipelineSettings; the other three are the model's own
    assert {f.name for f in fields(TwoTowerConfig)} - set(shared) == {"context_sizes", "lr_decay", "init_std", "seed"}
    assert {n: run_config[n].default for n in shared} == {n: getattr(model, n) for n in shared}
    assert (model.title_dropout, model.sparse_lr) == (0.3, 0.02)  # what `make run` trained before they were one
    assert all(field.description for field in run_config.values())  # the launchpad says what each one is


@pytest.fixture(scope="module")
def tracks_run(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("tracks") / "data"
    shutil.copytree(tiny_raw, data_dir / "raw")
    result = run_chain(data_dir, assets=UPSTREAM + TRACKS + CHECKS, run_config=RUN_CONFIG, raise_on_error=False)
    return data_dir, result


def events(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_every_tracks_asset_materializes_with_checks_passing(tracks_run) -> None:
    data_dir, result = tracks_run
    assert result.success
    metadata = events(result)
    for asset in TRACKS:
        assert asset.key.to_user_string() in metadata, asset.key
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}  # the marts' checks too
    assert {c.check_key.name for c in CHECKS} <= set(checks)
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items() if not c.passed}
    assert metadata["track_embeddings"]["tracks_dropped_below_min_count"].value > 0
    assert "| category | queries | popularity |" in metadata["playlist_continuation_eval"]["results"].value
    assert "| rank | track | artist |" in metadata["similar_tracks"]["examples"].value


def test_embedding_artifact_follows_the_serving_convention(tracks_run) -> None:
    data_dir, _ = tracks_run
    arrays = TRACK_EMBEDDINGS.load(TRACK_EMBEDDINGS.under(data_dir / "artifacts"))
    assert set(arrays) == set(TRACK_EMBEDDINGS.arrays)  # nothing undeclared
    vectors, track_ids = arrays["vectors"], arrays["track_ids"]
    assert vectors.dtype == np.float32 and track_ids.dtype == np.int64 and vectors.shape[0] == track_ids.shape[0]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with warehouse(data_dir) as con:
        n_tracks = con.execute("SELECT count(*) FROM track_dictionary").fetchall()[0][0]
        # embedded tracks are those seen >= min_count times in *train* playlists
        counts = dict(con.execute(
            "SELECT track_id, count(*) FROM playlist_track_ids JOIN track_playlist_splits USING (pid) "
            "WHERE split = 'train' GROUP BY track_id").fetchall())
    assert track_ids.max() < n_tracks and np.unique(track_ids).size == track_ids.size
    assert sorted(track_ids.tolist()) == sorted(t for t, n in counts.items() if n >= MIN_COUNT)


def test_item2vec_puts_same_genre_tracks_closer_than_cross_genre(tracks_run) -> None:
    data_dir, result = tracks_run
    assert events(result)["track_embeddings"]["method"].value == "item2vec"
    arrays = TRACK_EMBEDDINGS.load(TRACK_EMBEDDINGS.under(data_dir / "artifacts"), "vectors", "track_ids")
    vectors, track_ids = arrays["vectors"], arrays["track_ids"]
    with warehouse(data_dir) as con:
        uri = dict(con.execute("SELECT track_id, track_uri FROM track_dictionary").fetchall())
    genre_of = {row["track_uri"]: int(row["genre"]) for row in read_tsv(data_dir / "raw" / "truth" / "track_genre.tsv")}
    genre = np.array([genre_of[uri[t]] for t in track_ids.tolist()])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, track_ids.size, (2, 200_000))
    distinct = a != b
    cos = np.einsum("nd,nd->n", vectors[a[distinct]], vectors[b[distinct]])
    same = genre[a[distinct]] == genre[b[distinct]]
    assert cos[same].mean() > cos[~same].mean() + 0.05, (cos[same].mean(), cos[~same].mean())
    # and a track's nearest neighbour shares its genre far more often than chance (~1/50 genres)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    assert (genre[sims.argmax(axis=1)] == genre).mean() > 0.3


def test_duplicate_tracks_find_the_planted_duplicates(tracks_run) -> None:
    data_dir, _ = tracks_run
    with warehouse(data_dir) as con:
        found = con.execute("SELECT track_uri, group_id, verdict FROM duplicate_tracks").fetchall()
        present = {r[0] for r in con.execute("SELECT track_uri FROM track_dictionary").fetchall()}
    truth_group = {row["track_uri"]: int(row["group"])
                   for row in read_tsv(data_dir / "raw" / "truth" / "duplicate_tracks.tsv") if row["track_uri"] in present}
    # pairs of distinct URIs in one group, predicted vs planted (only URIs that occur in the data)
    def pairs(groups: dict[str, int]) -> set[tuple[str, str]]:
        by_group: dict[int, list[str]] = {}
        for uri, g in groups.items():
            by_group.setdefault(g, []).append(uri)
        return {(x, y) for members in by_group.values() for x in members for y in members if x < y}

    predicted = pairs({uri: g for uri, g, _ in found})
    planted = pairs(truth_group)
    assert planted, "tiny data should contain planted duplicates"
    precision = len(predicted & planted) / len(predicted)
    recall = len(predicted & planted) / len(planted)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)
    verdicts = {v for _, _, v in found}
    assert verdicts <= {"canonical", "confirmed", "flagged", "unverified"} and "canonical" in verdicts


def test_embedding_map_is_a_non_trivial_png(tracks_run) -> None:
    from matplotlib.image import imread

    data_dir, result = tracks_run
    path = TRACK_MAP_PLOT.under(data_dir / "artifacts")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 300
    colours = np.unique(image[..., :3].reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 20  # points in several genre colours, not a blank canvas
    metadata = events(result)["track_embedding_map"]
    assert "data:image/png;base64," in metadata["map"].value
    assert metadata["tracks_with_a_genre"].value > 0.5 * metadata["tracks_drawn"].value


def test_continuation_table_ranks_every_model_per_category(tracks_run) -> None:
    data_dir, result = tracks_run
    with warehouse(data_dir) as con:
        rows = {(r[0], r[1]): r[2:] for r in con.execute(
            "SELECT category, model, queries, r_precision, r_precision_tracks, ndcg, clicks, precision_at_100 "
            "FROM playlist_continuation_eval").fetchall()}
        test_playlists = con.execute("SELECT count(*) FROM track_playlist_splits WHERE split = 'test'").fetchall()[0][0]
    models = {"popularity", "cooccurrence", "item2vec", "als", "two_tower"}
    categories = {c for c, _ in rows}
    # tiny's 50 test playlists are too short for the 100-track categories: skipped and reported
    assert categories == {c.name for c in CATEGORIES if c.seeds < 100} | {"overall"}
    metadata = events(result)["playlist_continuation_eval"]
    assert set(metadata["skipped_categories"].value) == {"title + first 100", "title + random 100"}
    for category in categories:
        assert {m for c, m in rows if c == category} == models
    for (category, model), (queries, rp, rp_tracks, ndcg, clicks, p100) in rows.items():
        assert 0 < queries <= (test_playlists if category != "overall" else 10 * test_playlists)
        assert 0 <= rp_tracks <= rp <= 1 and 0 <= ndcg <= 1 and 0 <= clicks <= 51 and 0 <= p100 <= 1
    # every model answered the same queries
    assert len({rows[("overall", m)][0] for m in models}) == 1
    ndcg = {key: value[3] for key, value in rows.items()}
    assert ndcg[("title only", "two_tower")] > 1.5 * ndcg[("title only", "popularity")]  # names carry the genre
    assert ndcg[("title only", "als")] == ndcg[("title only", "popularity")]  # nothing to fold in
    assert ndcg[("overall", "cooccurrence")] > ndcg[("overall", "popularity")]
    for key in ("results", "two_tower_targets", "bench_results", "als_trials"):
        assert metadata[key].value.strip()
    assert "| title only |" in metadata["results"].value


def test_two_tower_trains_on_train_playlists_only(tracks_run) -> None:
    """The model's vocabulary and popularity buckets are those of the train split: no track
    occurrence from a val or test playlist reached it."""
    data_dir, result = tracks_run
    model = load_two_tower(TWO_TOWER.under(data_dir / "artifacts"))
    with warehouse(data_dir) as con:
        counts = dict(con.execute(
            "SELECT track_id, count(*) FROM playlist_track_ids JOIN track_playlist_splits USING (pid) "
            "WHERE split = 'train' GROUP BY track_id").fetchall())
        held_out_only = con.execute(
            """SELECT count(DISTINCT track_id) FROM playlist_track_ids JOIN track_playlist_splits USING (pid)
               WHERE split <> 'train' AND track_id NOT IN (SELECT track_id FROM playlist_track_ids
               JOIN track_playlist_splits USING (pid) WHERE split = 'train')""").fetchall()[0][0]
        uris = dict(con.execute("SELECT track_id, track_uri FROM track_dictionary").fetchall())
    assert held_out_only > 0  # there are tracks the model must not know
    assert model.vocab_track_ids.tolist() == sorted(counts)
    expected = popularity_buckets(np.array([counts[t] for t in model.vocab_track_ids.tolist()]))
    np.testing.assert_array_equal(model.net.vocab_popularity.numpy(), expected)
    assert model.catalogue["track_uri"] == [uris[t] for t in model.vocab_track_ids.tolist()]
    metadata = events(result)["two_tower_model"]
    assert metadata["vocabulary_tracks"].value == len(counts) and "| epoch |" in metadata["history"].value


def _digests(data_dir: Path) -> dict[str, str]:
    out = {"embeddings": hashlib.sha256(TRACK_EMBEDDINGS.under(data_dir / "artifacts").read_bytes()).hexdigest()}
    weights = load_two_tower(TWO_TOWER.under(data_dir / "artifacts")).net.state_dict()
    out["two_tower"] = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
    with warehouse(data_dir) as con:
        for table in TABLES:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()]
            keep = ", ".join(f'"{c}"' for c in columns if c != "seconds")  # timings differ run to run
            rows = con.execute(f'SELECT {keep} FROM "{table}" ORDER BY ALL').fetchall()
            out[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


@pytest.mark.slow  # two more runs of the group (~20 s)
def test_same_seed_same_outputs_other_seed_differs(tracks_run, tmp_path: Path) -> None:
    data_dir, _ = tracks_run
    first = _digests(data_dir)
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("*.tmp"))
    again = run_chain(copy, seed=0, assets=TRACKS, run_config=RUN_CONFIG)
    assert again.success
    assert _digests(copy) == first
    other = run_chain(copy, seed=1, assets=TRACKS, run_config=RUN_CONFIG)
    assert other.success
    changed = _digests(copy)
    assert changed["embeddings"] != first["embeddings"] and changed["two_tower"] != first["two_tower"]
    assert changed["track_playlist_splits"] != first["track_playlist_splits"]
