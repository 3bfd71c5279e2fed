"""Train and evaluate every model on `tiny` data through the asset graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from spotify_assets.defs.evaluate.assets import model_leaderboard
from spotify_assets.defs.train.assets import als_model, bpr_model, bpr_sweep, popularity_model, user_neighbors
from spotify_assets_tests.test_label_split_assets import CHAIN, run_chain

MODELS = [bpr_sweep, bpr_model, user_neighbors, popularity_model, als_model, model_leaderboard]


@pytest.fixture(scope="module")
def evaluated(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("models") / "data"
    shutil.copytree(tiny_raw, data_dir / "raw")
    result = run_chain(data_dir, assets=CHAIN + MODELS, run_config={"ops": {
        "bpr_sweep": {"config": {"dims": [8, 16], "lrs": [0.1], "max_epochs": 3}},
        "bpr_model": {"config": {"max_epochs": 5}},
        "als_model": {"config": {"factors": [8], "alphas": [1.0, 10.0], "iterations": 5}},
        "user_neighbors": {"config": {"k": 20}},
    }}, raise_on_error=False)
    return data_dir, result


def test_leaderboard_has_every_model_and_segment(evaluated) -> None:
    data_dir, result = evaluated
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    for key in ("bpr_model", "user_neighbors", "popularity_model", "als_model", "model_leaderboard"):
        assert key in events, f"{key} was not materialized"
    assert (data_dir / "artifacts" / "train" / "bpr.pt").exists()
    assert "| model |" in events["model_leaderboard"]["leaderboard"].value
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT model, segment, mrr, \"recall@10\" FROM model_leaderboard").fetchall()
    overall = {m: (mrr, recall) for m, seg, mrr, recall in rows if seg == "all"}
    segments = {seg for _, seg, _, _ in rows}
    # tiny data: every test row belongs to a cold user (warm users have < 5 positives)
    assert {"all", "cold"} <= segments <= {"all", "warm", "cold", "cold_light (<5 positives)"}
    assert set(overall) == {"random", "popularity", "als", "knn", "bpr", "oracle"}
    # the oracle ranks by the true score, which defines the labels: it must lead
    assert overall["oracle"][0] >= max(v[0] for k, v in overall.items() if k != "oracle")
    assert overall["oracle"][0] > overall["random"][0]
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "bpr_beats_popularity"]
    assert len(check) == 1  # evaluated (pass or fail is data-dependent at tiny scale)
    assert events["als_model"]["sweep"].value.count("\n") >= 3  # header, rule, 2 trials
    # the BPR sweep recorded both trials, and bpr_model trained with the winner's settings
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        trials = con.execute("SELECT dim, lr, val_mrr, wandb FROM bpr_sweep_trials ORDER BY trial").fetchall()
    assert [t[0] for t in trials] == [8, 16]
    best = events["bpr_sweep"]["best"].value
    assert events["bpr_model"]["config"].value["dim"] == best["dim"]
    assert "bpr_sweep best" in events["bpr_model"]["hyperparameters_from"].value
    # wandb ran offline and left its run folders under the data folder
    assert all(Path(t[3]).exists() and str(data_dir) in t[3] for t in trials)
    assert Path(events["bpr_model"]["wandb_run"].value).exists()
