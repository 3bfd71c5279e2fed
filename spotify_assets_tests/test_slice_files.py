"""The warehouse follows the slice files: a removed slice's rows go when its partition is
dropped, and a run refuses to build on rows whose file is gone (issue 16, item 1)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from spotify_assets import mpd_partitions
from spotify_assets.defs.ingest.assets import mpd_slice_tables
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices

# the slice tables and the SQL models that carry playlists downstream
DOWNSTREAM = ("stg_playlists", "stg_playlist_tracks", "track_dictionary", "artist_dictionary", "album_dictionary",
              "playlist_track_ids")
ASSETS = [mpd_slice_tables, *(a for a in sql_model_assets if a.key.to_user_string() in DOWNSTREAM)]


@pytest.fixture()
def project_env(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DAGSTER_HOME and the data folder of this test only; returns the warehouse path."""
    for key in [k for k in os.environ if k.startswith("SPOTIFY_ASSETS_")]:
        monkeypatch.delenv(key)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPOTIFY_ASSETS_DATA_DIR", str(data_dir))
    return data_dir / "warehouse" / "spotify.duckdb"


def _materialize(data_dir: Path, keys: list[str], selection=None) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            ASSETS, selection=selection, resources=build_resources(data_dir), instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )


def _slices_in(warehouse: Path, table: str = "mpd_playlists") -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.execute(f"SELECT slice, count(*) FROM {table} GROUP BY slice").fetchall())


def test_dropping_a_removed_slice_deletes_its_rows_and_downstream_follows(
        data_dir: Path, project_env: Path, capsys: pytest.CaptureFixture) -> None:
    """Regression: after deleting a slice file, `mpd_partitions` pruned the partition but the
    next ingest run still had its playlists in mpd_playlists and stg_playlists."""
    first, second = list_mpd_slices(data_dir / "raw" / "mpd")[:2]
    assert mpd_partitions.main([]) == 0
    assert _materialize(data_dir, [first.name, second.name]).success
    before = _slices_in(project_env)
    assert set(before) == {first.name, second.name}

    second.unlink()
    capsys.readouterr()
    assert mpd_partitions.main([]) == 0
    report = capsys.readouterr().err
    assert second.name in report and f"{before[second.name]:,} playlists" in report
    assert _slices_in(project_env) == {first.name: before[first.name]}
    assert set(_slices_in(project_env, "mpd_playlist_tracks")) == {first.name}
    assert set(_slices_in(project_env, "mpd_slice_files")) == {first.name}
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("mpd_slices") == [first.name]

    assert _materialize(data_dir, [first.name]).success
    with duckdb.connect(str(project_env), read_only=True) as con:
        n_staged = con.execute("SELECT count(*) FROM stg_playlists").fetchall()[0][0]
        n_track_ids = con.execute("SELECT count(DISTINCT pid) FROM playlist_track_ids").fetchall()[0][0]
    assert n_staged == before[first.name] and n_track_ids <= before[first.name]


def test_a_run_refuses_rows_whose_file_is_gone(data_dir: Path, project_env: Path) -> None:
    """A slice file deleted without dropping its partition (the daemon keeps running, or the
    partition was deleted in the UI): the next load refuses, naming the slice and the command."""
    first, second = list_mpd_slices(data_dir / "raw" / "mpd")[:2]
    assert mpd_partitions.main([]) == 0
    assert _materialize(data_dir, [first.name, second.name], selection=list(mpd_slice_tables.keys)).success
    before = _slices_in(project_env)
    second.unlink()

    result = _materialize(data_dir, [first.name], selection=list(mpd_slice_tables.keys))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert second.name in message and "python -m spotify_assets.mpd_partitions" in message
    assert _slices_in(project_env) == before  # nothing loaded or deleted
