"""Asset checks of the tracks group. Each wraps a pure verdict from
:mod:`spotify_assets.tracks.validation`; the ones that protect downstream assets block."""

import dagster as dg

from spotify_assets.checks import Verdict
from spotify_assets.contract import TRACK_EMBEDDINGS, TRACK_MAP_PLOT, TWO_TOWER
from spotify_assets.resources import DUCKDB_OP_TAGS, ArtifactStore, DuckDBWarehouse
from spotify_assets.tracks import validation


def _result(verdict: Verdict, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=verdict.passed, severity=severity, description=verdict.description,
                               metadata=dict(verdict.details))


@dg.asset_check(asset="next_track_examples", blocking=True, op_tags=DUCKDB_OP_TAGS)
def next_track_examples_valid(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Every playlist is in exactly one split and each of its examples carries that split; each
    playlist of n tracks gives exactly max(n - 5, 0) examples; every track id is in
    track_dictionary."""
    with warehouse.connect(read_only=True) as con:
        return _result(validation.examples_valid(con))


@dg.asset_check(asset="track_embeddings", blocking=True)
def track_embeddings_valid(artifacts: ArtifactStore, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """The embedding artifact holds finite, L2-normalised float32 vectors and unique int64
    track ids inside track_dictionary (what similar tracks, the map and the serving index assume)."""
    arrays = artifacts.read(TRACK_EMBEDDINGS, "vectors", "track_ids")
    with warehouse.connect(read_only=True) as con:
        n_tracks = con.execute("SELECT count(*) FROM track_dictionary").fetchall()[0][0]
    return _result(validation.embeddings_valid(arrays["vectors"], arrays["track_ids"], int(n_tracks)))


@dg.asset_check(asset="duplicate_tracks", op_tags=DUCKDB_OP_TAGS)
def duplicates_mostly_confirmed(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Warns when fewer than half of the key-matched duplicate pairs that have embeddings are
    confirmed by them: the canonical key would then be merging different songs."""
    with warehouse.connect(read_only=True) as con:
        return _result(validation.duplicates_mostly_confirmed(con), dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset="track_embedding_map")
def track_embedding_map_is_png(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    """The map is a valid, non-trivial PNG (signature, IHDR with a size, at least 2 kB)."""
    return _result(validation.png_valid(artifacts.file(TRACK_MAP_PLOT)))


@dg.asset_check(asset="playlist_continuation_eval", op_tags=DUCKDB_OP_TAGS)
def item2vec_beats_popularity(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Warns when item2vec's continuation NDCG is not above the popularity baseline's."""
    with warehouse.connect(read_only=True) as con:
        return _result(validation.continuation_beats_popularity(con, "item2vec"), dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset="playlist_continuation_eval", op_tags=DUCKDB_OP_TAGS)
def two_tower_beats_popularity_from_names(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Warns when the two-tower model's NDCG for title-only playlists is not above the
    popularity list's: its name tower would then have learned nothing."""
    with warehouse.connect(read_only=True) as con:
        return _result(validation.continuation_beats_popularity(con, "two_tower", "title only"),
                       dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset="two_tower_model", blocking=True)
def two_tower_model_ranks(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    """The model file loads with torch.load(weights_only=True), carries a name for every
    vocabulary track, and ranks full, distinct, name-dependent lists for name-only
    playlists (what the continue endpoint serves)."""
    return _result(validation.two_tower_ranks(artifacts.file(TWO_TOWER)))
