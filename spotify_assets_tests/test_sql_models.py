"""The dbt_like_sql factory: dependencies parsed from SQL, tables built, dictionaries dense."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from spotify_assets import checks
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices, load_entp_triplets, load_mpd_slice, load_msd_songs
from spotify_assets.sql.models import discover_models, materialize_model, parse_model, upstream_tables


def test_upstream_tables_excludes_ctes_and_finds_joins() -> None:
    sql = """
        WITH recent AS (SELECT * FROM mpd_playlists WHERE modified_at > 0)
        SELECT r.pid, t.track_uri FROM recent r
        JOIN stg_playlist_tracks t ON t.pid = r.pid
        WHERE t.track_uri IN (SELECT track_uri FROM track_dictionary)
    """
    assert upstream_tables(sql) == ("mpd_playlists", "stg_playlist_tracks", "track_dictionary")


def test_header_comments_declare_tests(tmp_path: Path) -> None:
    layer = tmp_path / "marts"
    layer.mkdir()
    path = layer / "thing_dictionary.sql"
    path.write_text("-- description: things\n-- unique_key: a, b\n-- dense_id: thing_id\nSELECT 1 AS thing_id FROM x\n")
    model = parse_model(path, tmp_path)
    assert (model.layer, model.unique_key, model.dense_id, model.upstream) == ("marts", ("a", "b"), ("thing_id",), ("x",))


def test_every_model_depends_only_on_known_tables() -> None:
    models = discover_models()
    names = {m.name for m in models}
    sources = {"mpd_playlists", "mpd_playlist_tracks", "entp_listens", "msd_songs"}
    for model in models:
        assert model.upstream, f"{model.name} reads no table"
        unknown = set(model.upstream) - names - sources
        assert not unknown, f"{model.name} reads unknown tables {unknown}"
    assert {"track_dictionary", "artist_dictionary", "album_dictionary"} <= names


def test_factory_builds_assets_with_parsed_deps_and_checks() -> None:
    by_key = {a.key.to_user_string(): a for a in sql_model_assets}
    track_dictionary = by_key["track_dictionary"]
    deps = {key.to_user_string() for key in track_dictionary.asset_deps[track_dictionary.key]}
    assert deps == {"stg_playlist_tracks"}
    check_names = {key.name for key in track_dictionary.check_keys}
    assert check_names == {"unique_key", "not_null", "dense_track_id"}
    assert by_key["stg_listens"].group_names_by_key[dg.AssetKey("stg_listens")] == "staging"


@pytest.fixture()
def warehouse_with_models(tiny_raw: Path, con):
    for path in list_mpd_slices(tiny_raw / "mpd"):
        load_mpd_slice(con, path)
    load_entp_triplets(con, next((tiny_raw / "entp").glob("train_triplets.txt*")))
    load_msd_songs(con, unique_tracks=tiny_raw / "msd" / "unique_tracks.txt", song_data=tiny_raw / "msd" / "song_data.csv")
    built = set()
    models = {m.name: m for m in discover_models()}
    # build in dependency order
    while len(built) < len(models):
        for name, model in models.items():
            if name not in built and all(u in built or u not in models for u in model.upstream):
                materialize_model(con, model)
                built.add(name)
    return con


def test_dictionaries_are_dense_and_complete(warehouse_with_models) -> None:
    con = warehouse_with_models
    for table, column, uri in [
        ("track_dictionary", "track_id", "track_uri"),
        ("artist_dictionary", "artist_id", "artist_uri"),
        ("album_dictionary", "album_id", "album_uri"),
    ]:
        assert checks.dense_id(con, table, column).passed
        assert checks.unique_key(con, table, [uri]).passed
        n_distinct = con.execute(f"SELECT count(DISTINCT {uri}) FROM mpd_playlist_tracks").fetchall()[0][0]
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == n_distinct
    # every playlist track maps to ids
    assert (
        con.execute("SELECT count(*) FROM playlist_track_ids").fetchall()[0][0]
        == con.execute("SELECT count(*) FROM mpd_playlist_tracks").fetchall()[0][0]
    )


def test_checks_catch_broken_tables(con) -> None:
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (0, 'a'), (2, 'b'), (2, NULL)) v(id, uri)")
    assert not checks.dense_id(con, "t", "id").passed
    assert not checks.unique_key(con, "t", ["id"]).passed
    assert not checks.not_null(con, "t", ["uri"]).passed
    with pytest.raises(ValueError, match="unsafe"):
        checks.unique_key(con, "t; DROP TABLE t", ["id"])


def test_replace_tables_is_all_or_nothing(con) -> None:
    import pyarrow as pa

    from spotify_assets.defs.metadata import replace_tables

    replace_tables(con, {"a": pa.table({"x": [1, 2]}), "b": pa.table({"y": ["u"]})})
    assert con.execute("SELECT sum(x) FROM a").fetchall()[0][0] == 3
    # the second replacement fails (bad identifier): the first must not be replaced either
    with pytest.raises(Exception):
        replace_tables(con, {"a": pa.table({"x": [10]}), 'b"; --': pa.table({"y": ["v"]})})
    assert con.execute("SELECT sum(x) FROM a").fetchall()[0][0] == 3
