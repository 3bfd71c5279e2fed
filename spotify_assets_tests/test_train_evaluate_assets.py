"""Train and evaluate every model on `tiny` data through the asset graph: the leaderboard's
shape, selection by the validation full ranking, and the same leaderboard for the same seed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from spotify_assets.defs.evaluate.assets import model_leaderboard
from spotify_assets.defs.train.assets import (
    als_model,
    bpr_model,
    bpr_sweep,
    popularity_model,
    song_ranker,
    user_neighbors,
)
from spotify_assets_tests.test_label_split_assets import CHAIN, run_chain

MODELS = [bpr_sweep, bpr_model, user_neighbors, popularity_model, als_model, song_ranker, model_leaderboard]
RUN_CONFIG = {"ops": {
    # tiny users have few positives: with the default of 5 nobody would have validation answers
    "user_splits": {"config": {"min_positives": 3}},
    "bpr_sweep": {"config": {"dims": [16], "lrs": [1e-4, 0.1], "max_epochs": 20, "val_every": 4}},
    "als_model": {"config": {"factors": [8], "alphas": [1.0, 10.0], "iterations": 5}},
    "user_neighbors": {"config": {"k": 20}},
    "song_ranker": {"config": {"max_epochs": 4}},
}}
MODEL_NAMES = {"random", "popularity", "als", "knn", "bpr", "song_ranker", "oracle"}


def _evaluate(tiny_raw: Path, root: Path):
    data_dir = root / "data"
    shutil.copytree(tiny_raw, data_dir / "raw")
    return data_dir, run_chain(data_dir, assets=CHAIN + MODELS, run_config=RUN_CONFIG, raise_on_error=False)


@pytest.fixture(scope="module")
def evaluated(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    return _evaluate(tiny_raw, tmp_path_factory.mktemp("models"))


def _leaderboard(data_dir: Path) -> list[tuple]:
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (train_seconds) FROM model_leaderboard ORDER BY ALL").fetchall()


def _rows(data_dir: Path) -> list[dict]:
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        cursor = con.execute('SELECT * FROM "model_leaderboard"')
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_leaderboard_has_every_model_split_and_segment(evaluated) -> None:
    data_dir, result = evaluated
    assert result.success
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    rows = _rows(data_dir)
    assert {r["model"] for r in rows} == MODEL_NAMES
    assert {(r["split"], r["segment"]) for r in rows} == {(s, g) for s in ("val", "test")
                                                          for g in ("all", "warm", "cold", "light")}
    # every model on the same users of each (split, segment)
    for split in ("val", "test"):
        for segment in ("all", "warm", "cold", "light"):
            assert len({r["users"] for r in rows if (r["split"], r["segment"]) == (split, segment)}) == 1
    test_all = {r["model"]: r for r in rows if (r["split"], r["segment"]) == ("test", "all")}
    # full ranking is filled in for every segment (not only "all")
    assert all(r["recall@10"] is not None for r in rows if r["users"] > 0)
    # the oracle ranks by the true score, which defines the labels: it leads, and closes the whole gap
    assert test_all["oracle"]["recall@10"] >= max(r["recall@10"] for m, r in test_all.items() if m != "oracle")
    assert test_all["oracle"]["oracle_gap_closed"] == pytest.approx(1.0)
    assert test_all["popularity"]["oracle_gap_closed"] == pytest.approx(0.0)
    assert test_all["song_ranker"]["recall@10"] > test_all["popularity"]["recall@10"]
    # the sampled metric stays as the seed-comparable column, on test rows only
    assert all(r["sampled_mrr"] is not None for r in rows if r["split"] == "test" and r["segment"] == "all")
    assert all(r["sampled_mrr"] is None for r in rows if r["split"] == "val")
    assert all(r["leak_free"] for r in rows)  # the default recipe reads no held-out label
    assert all(test_all[m]["train_seconds"] is not None for m in ("bpr", "als", "knn", "song_ranker", "popularity"))
    meta = events["model_leaderboard"]
    assert "| song_ranker |" in meta["test_leaderboard"].value and "data:image/png;base64," in meta["plot"].value
    checks = {c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key.to_user_string()
              == "model_leaderboard"}
    assert set(checks) == {"bpr_beats_popularity", "song_ranker_beats_knn"}
    # tiny holds out a handful of validation answers: the gate says it did not judge them
    assert checks["bpr_beats_popularity"].passed and "not judged" in checks["bpr_beats_popularity"].description


def test_sweep_and_early_stopping_choose_on_the_validation_full_ranking(evaluated) -> None:
    data_dir, result = evaluated
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        trials = con.execute('SELECT lr, "val_recall@10", best_epoch, wandb FROM bpr_sweep_trials ORDER BY trial'
                             ).fetchall()
    assert [t[0] for t in trials] == [1e-4, 0.1]
    best = json.loads((data_dir / "artifacts" / "train" / "bpr_sweep_best.json").read_text())
    winner = max(trials, key=lambda t: t[1])  # the first of equals, as the sweep picks
    assert best["lr"] == winner[0] and best["val_recall@10"] == pytest.approx(winner[1])
    # bpr_model is the best trial (its checkpoint, with users without interactions folded in)
    assert "bpr_sweep best trial" in events["bpr_model"]["hyperparameters_from"].value
    trial = torch.load(data_dir / "artifacts" / "train" / "sweep" / best["checkpoint"], weights_only=True)
    model = torch.load(data_dir / "artifacts" / "train" / "bpr.pt", weights_only=True)
    assert torch.equal(trial["state_dict"]["playlists.weight"], model["state_dict"]["playlists.weight"])
    assert model["val_recall"] == pytest.approx(best["val_recall@10"])
    interactions = np.load(data_dir / "artifacts" / "split" / "training_interactions.npz")
    warm = np.diff(interactions["indptr"]) > 0
    assert torch.equal(trial["state_dict"]["users.weight"][warm], model["state_dict"]["users.weight"][warm])
    assert not torch.equal(trial["state_dict"]["users.weight"][~warm], model["state_dict"]["users.weight"][~warm])
    # ALS kept its best validation trial; every model's choice used the same validation users
    assert events["als_model"]["sweep"].value.count("\n") >= 3  # header, rule, 2 trials
    assert events["als_model"]["validation_users"].value == events["bpr_sweep"]["validation_users"].value
    # wandb ran offline and left its run folders under the data folder
    assert all(Path(t[3]).exists() and str(data_dir) in t[3] for t in trials)


@pytest.mark.slow
def test_same_seed_gives_the_same_leaderboard(evaluated, tiny_raw: Path, tmp_path: Path) -> None:
    data_dir, _ = evaluated
    again, result = _evaluate(tiny_raw, tmp_path)
    assert result.success
    assert _leaderboard(again) == _leaderboard(data_dir)
