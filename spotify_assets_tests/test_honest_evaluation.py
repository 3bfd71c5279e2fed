"""Honest evaluation: training never reads a held-out label, full ranking excludes exactly
what it should, segment metrics are what a hand computation gives, and choices read the
validation task, never the test one."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
import torch

from spotify_assets.defs.prepare.assets import interaction_matrices
from spotify_assets.defs.serve.assets import _choose_model
from spotify_assets.evaluate.tasks import RankingTask, evaluate_full, ranking_tasks
from spotify_assets.label.driver import label_users
from spotify_assets.label.scores import exploration_coefficients
from spotify_assets.evaluate.leaderboard import leaderboard_rows, quality_gate
from spotify_assets.prepare.matrices import load_csr
from spotify_assets.train.bpr import BPRConfig, EpochTriplets, load_checkpoint, train_bpr
from spotify_assets.train.knn import top_k_neighbors
from spotify_assets.train.negatives import InteractionSet
from spotify_assets.train.song_ranker import CandidateBatches, SongRankerConfig
from spotify_assets.train.song_scoring import SongSignals
from spotify_assets.split.interactions import training_interactions
from spotify_assets.split.ownership import assign_ownership
from spotify_assets.split.users import TEST, TRAIN, VAL, split_users
from spotify_assets_tests.test_label_split_assets import CHAIN, run_chain


@pytest.fixture(scope="module")
def labelled(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """Labels, splits and ownership of the `tiny` data, through the pipeline's prepare step."""
    data_dir = tmp_path_factory.mktemp("honest") / "data"
    shutil.copytree(tiny_raw, data_dir / "raw")
    run_chain(data_dir, assets=CHAIN[: CHAIN.index(interaction_matrices) + 1])
    user_song = load_csr(data_dir / "artifacts" / "prepare" / "user_song.npz")
    playlist_song = load_csr(data_dir / "artifacts" / "prepare" / "playlist_song.npz")
    labels = label_users(user_song, playlist_song, exploration_coefficients(user_song.shape[0], 0))
    splits = split_users(labels.liked_indptr, seed=0, cold_share=0.1, min_positives=3)
    owner = assign_ownership(labels.ownership, labels.liked_indptr, labels.liked_playlists, splits.split).owner
    return user_song, playlist_song, labels, splits, owner


def _perturb_held_out(labels, split: np.ndarray, n_playlists: int, seed: int) -> np.ndarray:
    """The liked playlists with every validation / test answer replaced by another playlist
    (the train pairs untouched): what a different truth would look like to the sampler."""
    rng = np.random.default_rng(seed)
    changed = labels.liked_playlists.astype(np.int64).copy()
    held = np.flatnonzero(split != TRAIN)
    changed[held] = (changed[held] + rng.integers(1, n_playlists, held.size)) % n_playlists
    return changed


def test_training_draws_are_byte_identical_whatever_the_held_out_labels(labelled) -> None:
    user_song, playlist_song, labels, splits, owner = labelled
    n_playlists = playlist_song.shape[0]
    assert (splits.split != TRAIN).sum() > 20  # there is something to change
    draws = []
    for liked in (labels.liked_playlists, _perturb_held_out(labels, splits.split, n_playlists, 1),
                  _perturb_held_out(labels, splits.split, n_playlists, 2)):
        interactions = training_interactions(labels.liked_indptr, liked, splits.split, owner).matrix
        users = np.repeat(np.arange(interactions.shape[0]), np.diff(interactions.indptr))
        interaction_set = InteractionSet.from_csr(interactions)
        epochs = {}
        for mode in ("uniform", "popularity", "hard"):
            dataset = EpochTriplets(interaction_set, users, interactions.indices.astype(np.int64),
                                    BPRConfig(negatives=mode, negatives_per_positive=2, hard_candidates=4, seed=7), 256)
            epochs[mode] = [torch.cat(list(dataset)).numpy() for _ in range(2)]
        signals = SongSignals.build(user_song, playlist_song, interactions, top_k_neighbors(user_song, k=10))
        ranker_batches = [tuple(t.numpy() for t in batch) for batch in
                          CandidateBatches(signals, interaction_set, SongRankerConfig(users_per_batch=64))]
        draws.append((interactions, epochs, ranker_batches))
    reference = draws[0]
    for other in draws[1:]:
        for name in ("indptr", "indices", "data"):
            assert getattr(other[0], name).tobytes() == getattr(reference[0], name).tobytes()
        for mode in reference[1]:
            for a, b in zip(reference[1][mode], other[1][mode]):
                assert a.tobytes() == b.tobytes(), mode
        assert len(other[2]) == len(reference[2])
        for a, b in zip(reference[2], other[2]):
            assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_bpr_weights_are_identical_whatever_the_held_out_labels(labelled, tmp_path: Path) -> None:
    """End to end through training (no validation, so nothing may differ at all)."""
    _, playlist_song, labels, splits, owner = labelled
    config = BPRConfig(dim=8, max_epochs=3, negatives="hard", hard_candidates=4, seed=1)
    weights = []
    for k, liked in enumerate((labels.liked_playlists, _perturb_held_out(labels, splits.split, playlist_song.shape[0], 3))):
        interactions = training_interactions(labels.liked_indptr, liked, splits.split, owner).matrix
        result = train_bpr(interactions, config, tmp_path / f"{k}.pt", accelerator="cpu")
        weights.append(load_checkpoint(result.checkpoint).state_dict())
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_interactions_are_train_feedback_and_owned_only(labelled) -> None:
    _, _, labels, splits, owner = labelled
    feedback_users, feedback_playlists = np.array([0, 0]), np.array([3, 4])
    result = training_interactions(labels.liked_indptr, labels.liked_playlists, splits.split, owner,
                                   feedback_users, feedback_playlists)
    users = np.repeat(np.arange(labels.liked_indptr.size - 1), np.diff(labels.liked_indptr))
    pairs = set(zip(*result.matrix.nonzero()))
    train = set(zip(users[splits.split == TRAIN].tolist(), labels.liked_playlists[splits.split == TRAIN].tolist()))
    owned = {(int(o), j) for j, o in enumerate(owner) if o >= 0}
    assert pairs == train | owned | {(0, 3), (0, 4)}
    held = set(zip(users[splits.split != TRAIN].tolist(), labels.liked_playlists[splits.split != TRAIN].tolist()))
    assert not pairs & held
    assert result.counts["train"] == len(train) and result.counts["owned"] == len(owned)
    assert result.counts["feedback"] == 2 and result.counts["total"] == len(pairs)


def _hand_task() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3 users x 6 playlists. User 0: train {0}, val {1}, test {2}; user 1: train {3}, test {4}
    (no val); user 2 is cold: val none, test {5, 0}."""
    interactions = sp.csr_matrix((np.ones(2, np.float32), ([0, 1], [0, 3])), shape=(3, 6))
    liked_indptr = np.array([0, 3, 5, 7])
    liked = np.array([0, 1, 2, 3, 4, 5, 0])
    split = np.array([TRAIN, VAL, TEST, TRAIN, TEST, TEST, TEST], np.int8)
    cold = np.array([False, False, True])
    return interactions, liked_indptr, liked, split, cold


def test_full_ranking_excludes_interactions_and_for_test_the_validation_answers() -> None:
    interactions, liked_indptr, liked, split, cold = _hand_task()
    val, test = ranking_tasks(interactions, liked_indptr, liked, split, cold, min_positives=3)
    assert val.users.tolist() == [0] and test.users.tolist() == [0, 1, 2]
    assert val.excluded.toarray().tolist() == interactions.toarray().tolist()
    expected = interactions.toarray()
    expected[0, 1] = 1  # user 0's validation answer
    assert test.excluded.toarray().tolist() == expected.tolist()
    assert test.relevant.toarray()[2].tolist() == [1, 0, 0, 0, 0, 1]
    # a model that puts excluded playlists first loses nothing by it: they are never ranked
    scores = np.array([[9, 8, 7, 0, 0, 0], [0, 0, 0, 9, 8, 0], [6, 0, 0, 0, 0, 5]], np.float64)
    per_segment = evaluate_full(lambda users: scores[users], test)
    assert per_segment["all"]["recall@10"] == pytest.approx(1.0)
    # NDCG@10 by hand: user 0's answer ranks 1st after exclusions, user 1's 1st, user 2's two answers 1st and 2nd
    assert per_segment["all"]["ndcg@10"] == pytest.approx(1.0)
    # the same scores without the exclusion of user 0's validation answer would rank it above the test answer
    leaky = RankingTask("test", test.users, test.relevant, val.excluded, test.segments)
    assert evaluate_full(lambda users: scores[users], leaky)["all"]["ndcg@10"] < 1.0


def test_segment_metrics_by_hand() -> None:
    interactions, liked_indptr, liked, split, cold = _hand_task()
    _, test = ranking_tasks(interactions, liked_indptr, liked, split, cold, min_positives=3)
    assert {k: v.tolist() for k, v in test.segments.items()} == {
        "all": [True, True, True], "warm": [True, True, False], "cold": [False, False, True],
        "light": [False, True, True]}
    # user 0's answer (2) ranks 3rd; user 1's answer (4) last of the 5 it may rank; user 2's
    # answers 5 and 0 rank 1st and 4th
    scores = np.array([[0, 0, 3, 0, 5, 4], [5, 4, 3, 0, 0, 2], [1, 0, 0, 3, 2, 9]], np.float64)
    metrics = evaluate_full(lambda users: scores[users], test)
    # Recall@10 = hits / min(10, |answers|) = 1 for every user (at most 6 playlists)
    assert metrics["all"]["recall@10"] == pytest.approx(1.0)
    dcg = {0: 1 / np.log2(1 + 3),  # 2 ranks 3rd (behind 4 and 5; 0 and 1 excluded)
           1: 1 / np.log2(1 + 5),  # 4 ranks 5th of 5 (3 excluded; 0, 1, 2, 5 ahead)
           2: (1 / np.log2(2) + 1 / np.log2(1 + 4)) / (1 / np.log2(2) + 1 / np.log2(3))}
    assert metrics["warm"]["ndcg@10"] == pytest.approx((dcg[0] + dcg[1]) / 2)
    assert metrics["cold"]["ndcg@10"] == pytest.approx(dcg[2])
    assert metrics["light"]["ndcg@10"] == pytest.approx((dcg[1] + dcg[2]) / 2)
    assert metrics["all"]["ndcg@10"] == pytest.approx(sum(dcg.values()) / 3)
    assert {k: v["users"] for k, v in metrics.items()} == {"all": 3, "warm": 2, "cold": 1, "light": 2}


def test_task_subsets_are_seeded_and_keep_segments_aligned() -> None:
    users = np.arange(100, dtype=np.int64)
    task = RankingTask("val", users, sp.csr_matrix((100, 5)), sp.csr_matrix((100, 5)),
                       {"all": np.ones(100, bool), "cold": users % 2 == 0})
    a, b = task.subset(10, seed=3), task.subset(10, seed=3)
    assert a.users.tolist() == b.users.tolist() and a.users.size == 10
    assert a.segments["cold"].tolist() == (a.users % 2 == 0).tolist()
    assert task.subset(0, 3) is task and task.subset(500, 3) is task
    assert task.subset(10, seed=4).users.tolist() != a.users.tolist()


def test_quality_gate() -> None:
    assert quality_gate({"recall@10": 0.3, "users": 100}, {"recall@10": 0.1, "users": 100}, 30)[0]
    passed, says = quality_gate({"recall@10": 0.1, "users": 100}, {"recall@10": 0.3, "users": 100}, 30)
    assert not passed and "0.1000 vs 0.3000" in says
    passed, says = quality_gate({"recall@10": 0.0, "users": 2}, {"recall@10": 0.3, "users": 2}, 30)
    assert passed and "not judged" in says


def test_serving_choice_reads_validation_not_test() -> None:
    full = {"bpr": {"val": {"all": {"recall@10": 0.5, "recall@50": 0.7, "ndcg@10": 0.3, "users": 9}},
                    "test": {"all": {"recall@10": 0.1, "recall@50": 0.2, "ndcg@10": 0.1, "users": 9}}},
            "als": {"val": {"all": {"recall@10": 0.4, "recall@50": 0.6, "ndcg@10": 0.2, "users": 9}},
                    "test": {"all": {"recall@10": 0.9, "recall@50": 0.9, "ndcg@10": 0.8, "users": 9}}}}
    board = pa.Table.from_pylist(leaderboard_rows(full, {}, {}))
    with duckdb.connect() as con:
        con.register("board", board)
        con.execute("CREATE TABLE model_leaderboard AS SELECT * FROM board")
        model, reason, table = _choose_model(con, "auto")
    assert model == "bpr" and "validation" in reason  # ALS leads on test, which is never read
    assert [row["model"] for row in table] == ["bpr", "als"]


def test_leaderboard_rows_mark_the_seed_recipe_leaky() -> None:
    metrics = {"recall@10": 0.5, "recall@50": 0.7, "ndcg@10": 0.3, "users": 4}
    full = {m: {"test": {"all": dict(metrics)}} for m in ("popularity", "bpr", "oracle")}
    full["popularity"]["test"]["all"]["recall@10"] = 0.1
    full["oracle"]["test"]["all"]["recall@10"] = 0.9
    rows = {r["model"]: r for r in leaderboard_rows(full, {"bpr": {"all": {"mrr": 0.6, "hit@10": 0.9}}},
                                                    {"bpr": {"train_seconds": 2.5, "leak_free": False}})}
    assert rows["bpr"]["leak_free"] is False and rows["popularity"]["leak_free"] is True
    assert rows["bpr"]["oracle_gap_closed"] == pytest.approx((0.5 - 0.1) / (0.9 - 0.1))
    assert rows["bpr"]["sampled_mrr"] == 0.6 and rows["bpr"]["train_seconds"] == 2.5
