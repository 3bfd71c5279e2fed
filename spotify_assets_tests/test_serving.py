"""Serving kernels: Annoy recall against exact search, exclusions, feedback as training data."""

from __future__ import annotations

import hashlib
import multiprocessing
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pytest

from spotify_assets.feedback import FeedbackLog, FeedbackRows, training_pairs
from spotify_assets.serving.index import (
    augment_for_bias,
    build_annoy,
    exact_top_k,
    load_annoy,
    measure_recall,
    tune_search_k,
)
from spotify_assets.serving.recommender import popularity_fallback, search_excluding
from spotify_assets.split.feedback import feedback_triplets
from spotify_assets.split.users import TEST, TRAIN, VAL


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, d)) * 3
    return (centers[rng.integers(0, 20, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_bias_folding_gives_the_model_score() -> None:
    rng = np.random.default_rng(0)
    users, items, bias = rng.normal(size=(7, 4)), rng.normal(size=(9, 4)), rng.normal(size=9)
    u, p = augment_for_bias(users, items, bias)
    np.testing.assert_allclose(u @ p.T, users @ items.T + bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="item_bias"):
        augment_for_bias(users, items, bias[:3])


@pytest.mark.parametrize("metric", ["dot", "angular", "euclidean"])
def test_exact_top_k_matches_a_full_sort(metric: str) -> None:
    items, queries = clustered(500, 8, 1), clustered(37, 8, 2)
    got = exact_top_k(items, queries, 10, metric, block=16)
    if metric == "dot":
        scores = queries @ items.T
    elif metric == "angular":
        scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
            items / np.linalg.norm(items, axis=1, keepdims=True)).T
    else:
        scores = -((queries[:, None, :] - items[None]) ** 2).sum(-1)
    for q in range(queries.shape[0]):
        order = sorted(range(items.shape[0]), key=lambda j: (-scores[q, j], j))[:10]
        # float32 ties aside, the sets agree and the first item is the best one
        assert len(set(order) & set(got[q].tolist())) >= 9
        assert np.isclose(scores[q, got[q, 0]], scores[q, order[0]], rtol=1e-5)


@pytest.mark.parametrize("metric", ["dot", "angular"])
def test_annoy_recall_against_exact_search(tmp_path, metric: str) -> None:
    items, queries = clustered(3000, 16, 3), clustered(200, 16, 4)
    path = tmp_path / "index.ann"
    seconds = build_annoy(items, path, metric=metric, n_trees=50, seed=0)
    assert seconds > 0 and path.exists() and not list(tmp_path.glob(".*.tmp"))
    index = load_annoy(path, 16, metric)
    report, tried = tune_search_k(index, items, queries, metric, n_trees=50, k=10, target=0.95)
    assert report.queries == 200 and report.index_qps > 0 and report.exact_qps > 0
    assert report.recall >= 0.95, tried
    # the tuner stops at the first setting that reaches the target, and each try is a doubling
    assert all(r.recall < 0.95 for r in tried[:-1])
    assert [r.search_k for r in tried] == [500 * 2**i for i in range(len(tried))]
    # recall at a fixed setting is what the tuner measured there
    again = measure_recall(index, items, queries, metric, k=10, search_k=report.search_k)
    assert again.recall == report.recall
    # one tree inspecting few nodes is measurably worse: the measurement is not a constant
    build_annoy(items, tmp_path / "weak.ann", metric=metric, n_trees=1, seed=0)
    weak = measure_recall(load_annoy(tmp_path / "weak.ann", 16, metric), items, queries, metric, k=10, search_k=10)
    assert weak.recall < report.recall


def test_single_thread_build_is_byte_reproducible(tmp_path) -> None:
    items = clustered(2000, 8, 5)
    build_annoy(items, tmp_path / "a.ann", n_trees=10, seed=3)
    build_annoy(items, tmp_path / "b.ann", n_trees=10, seed=3)
    build_annoy(items, tmp_path / "c.ann", n_trees=10, seed=4)
    digest = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.ann", "b.ann", "c.ann")}
    assert digest["a.ann"] == digest["b.ann"] != digest["c.ann"]


def test_build_rejects_bad_vectors(tmp_path) -> None:
    with pytest.raises(ValueError, match="metric"):
        build_annoy(np.ones((3, 2)), tmp_path / "x.ann", metric="cosine")
    with pytest.raises(ValueError, match="NaN"):
        build_annoy(np.array([[1.0, np.nan]]), tmp_path / "x.ann")
    with pytest.raises(ValueError, match="non-empty"):
        build_annoy(np.empty((0, 4)), tmp_path / "x.ann")
    assert not (tmp_path / "x.ann").exists()


def test_search_excluding_skips_excluded_and_keeps_order(tmp_path) -> None:
    items = clustered(400, 8, 6)
    build_annoy(items, tmp_path / "i.ann", metric="dot", n_trees=30, seed=0)
    index = load_annoy(tmp_path / "i.ann", 8, "dot")
    query = items[0]
    full = exact_top_k(items, query[None], 20, "dot")[0]
    excluded = full[:7]
    all_items = np.arange(400, dtype=np.int64)
    ids, scores = search_excluding(index, query.tolist(), excluded, 5, -1, all_items)
    assert ids.size == 5 and not np.isin(ids, excluded).any()
    assert np.all(np.diff(scores) <= 1e-6)
    # excluding all but three items leaves exactly those three
    rest = np.setdiff1d(np.arange(400), [11, 22, 33])
    ids, _ = search_excluding(index, query.tolist(), rest, 5, -1, all_items)
    assert sorted(ids.tolist()) == [11, 22, 33]
    # an index over a subset answers in the subset's playlist ids
    subset = np.arange(0, 800, 2, dtype=np.int64)  # index item i is playlist 2i
    ids, _ = search_excluding(index, query.tolist(), np.array([subset[full[0]]]), 3, 10**6, subset)  # exhaustive
    assert ids.tolist() == subset[full[1:4]].tolist()


def test_popularity_fallback_skips_excluded() -> None:
    popular = np.array([9, 4, 7, 1, 3, 8], np.int64)
    rec = popularity_fallback(popular, np.arange(6, 0, -1).astype(np.float32), np.array([4, 1]), 3)
    assert rec.playlists.tolist() == [9, 7, 3] and rec.cold_start
    assert rec.scores.tolist() == [6.0, 4.0, 2.0]


def test_feedback_log_round_trip(tmp_path) -> None:
    log = FeedbackLog(tmp_path / "fb" / "feedback.sqlite")
    assert log.stats() == (0, 0) and log.read().feedback_id.size == 0
    a = log.add("u1", 10, [10, 11, 12], known_user=True)
    b = log.add("u2", 20, [21], known_user=False)
    assert (a, b) == (1, 2)
    assert log.stats() == (2, 2) and log.stats(after_id=1) == (1, 2)
    assert log.stats(known_only=True) == (1, 2) and log.stats(after_id=1, known_only=True) == (0, 2)
    rows = log.read()
    assert rows.user_id == ["u1", "u2"] and rows.liked_pid.tolist() == [10, 20]
    assert rows.shown_indptr.tolist() == [0, 3, 4] and rows.shown_pids.tolist() == [10, 11, 12, 21]
    assert log.read(up_to_id=1).feedback_id.tolist() == [1]


def _append_many(path: str, worker: int, n: int) -> None:
    log = FeedbackLog(path)
    for i in range(n):
        log.add(f"w{worker}", i, [i, i + 1], known_user=True)


def test_feedback_log_concurrent_writers_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "feedback.sqlite")
    FeedbackLog(path).add("seed", 0, [0], known_user=True)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(path, w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    rows = FeedbackLog(path).read()
    assert rows.feedback_id.size == 1 + 4 * 40
    assert sorted(set(rows.feedback_id.tolist())) == list(range(1, 162))
    for w in range(4):
        assert sorted(p for u, p in zip(rows.user_id, rows.liked_pid.tolist()) if u == f"w{w}") == list(range(40))


def test_duckdb_single_writer_blocks_a_second_process(tmp_path) -> None:
    """Why feedback lives in SQLite: while one process holds a DuckDB file open for writing
    (as the service would), another process cannot even open it read-only (the pipeline)."""
    db = tmp_path / "warehouse.duckdb"
    holder = duckdb.connect(str(db))
    holder.execute("CREATE TABLE t AS SELECT 1 AS x")
    try:
        probe = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import duckdb
            try:
                duckdb.connect({str(db)!r}, read_only=True)
            except duckdb.IOException as exc:
                print("LOCKED", exc)
            else:
                print("OPENED")
        """)], capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert probe.stdout.startswith("LOCKED"), probe.stdout + probe.stderr
    # and SQLite in WAL mode lets a reader in while a writer holds the file open
    log = FeedbackLog(tmp_path / "f.sqlite")
    log.add("u", 1, [1], known_user=True)
    import sqlite3

    writer = sqlite3.connect(tmp_path / "f.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids) VALUES (0, 'v', 2, '[2]')")
    try:
        assert log.stats() == (1, 1)  # reads the committed snapshot while the write is open
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert log.stats() == (2, 2)


def _rows(entries: list[tuple[str, int, list[int]]]) -> FeedbackRows:
    lengths = np.array([len(e[2]) for e in entries], np.int64)
    return FeedbackRows(feedback_id=np.arange(1, len(entries) + 1), user_id=[e[0] for e in entries],
                        liked_pid=np.array([e[1] for e in entries], np.int64),
                        shown_indptr=np.concatenate([[0], np.cumsum(lengths)]),
                        shown_pids=np.array([p for e in entries for p in e[2]], np.int64))


def test_training_pairs_map_ids_and_never_leak_held_out_answers() -> None:
    # 3 users, 6 playlists with public pids 100..105 (stored out of order on purpose)
    pids = np.array([103, 100, 101, 102, 104, 105], np.int64)  # dense index -> pid
    users = {"alice": 0, "bob": 1, "carol": 2}
    # labels: alice likes idx 1 (train), 2 (test); bob likes idx 0 (val)
    liked_indptr = np.array([0, 2, 3, 3])
    liked_playlists = np.array([1, 2, 0])
    split = np.array([TRAIN, TEST, VAL], np.int8)
    owner = np.array([-1, -1, -1, -1, 2, -1])  # carol owns idx 4 (pid 104)
    rows = _rows([
        ("alice", 101, [101, 103, 100, 104]),  # pid 101 = idx 2 = alice's TEST answer -> dropped
        ("alice", 102, [102, 100, 104]),  # new positive idx 3; 100 (idx 1) is liked -> not a negative
        ("bob", 103, [103, 105]),  # pid 103 = idx 0 = bob's VAL answer -> dropped
        ("carol", 105, [105, 104, 102]),  # 104 is owned by carol -> not a negative
        ("carol", 105, [105, 100]),  # repeat: merged
        ("dave", 100, [100]),  # unknown user
        ("alice", 999, [999]),  # unknown playlist
        ("bob", 100, [100, 102]),  # already a train positive? no: idx 1 is alice's; bob's new positive
    ])
    pairs = training_pairs(rows, users, pids, liked_indptr, liked_playlists, split, owner, TRAIN)
    got = sorted(zip(pairs.users.tolist(), pairs.playlists.tolist()))
    assert got == [(0, 3), (1, 1), (2, 5)]
    negs = {(int(u), int(p)): pairs.negatives[pairs.negative_indptr[i]:pairs.negative_indptr[i + 1]].tolist()
            for i, (u, p) in enumerate(zip(pairs.users, pairs.playlists))}
    assert negs[(0, 3)] == [4]  # pid 104 (idx 4) not owned by alice; pid 100 excluded as liked
    assert negs[(2, 5)] == [3]  # pid 102; 104 owned by carol
    assert negs[(1, 1)] == [3]
    assert pairs.counts["held_out_positive_dropped"] == 2
    assert pairs.counts["unknown_user_or_playlist"] == 2
    assert pairs.counts["duplicates_merged"] == 1
    assert pairs.counts["positives"] == 3


def test_feedback_triplets_take_the_first_negatives() -> None:
    t = feedback_triplets(np.array([5, 6, 7]), np.array([50, 60, 70]), np.array([0, 3, 3, 4]),
                          np.array([1, 2, 3, 9]), per_positive=2)
    assert t.tolist() == [[5, 50, 1], [5, 50, 2], [7, 70, 9]]
    assert feedback_triplets(np.empty(0), np.empty(0), np.array([0]), np.empty(0), 4).shape == (0, 3)


def test_exact_top_k_excluding_matches_a_per_user_sort() -> None:
    import scipy.sparse as sp

    from spotify_assets.serving.recommender import exact_top_k_excluding

    rng = np.random.default_rng(3)
    users, items = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(30, 6)).astype(np.float32)
    item_ids = np.sort(rng.choice(50, size=30, replace=False)).astype(np.int64)  # index over a subset
    excluded = sp.random(40, 50, density=0.3, format="csr", random_state=4)
    excluded.data[:] = 1
    excluded[7] = 0  # a user with nothing excluded
    excluded = sp.csr_matrix(excluded)
    excluded[9, item_ids[:28]] = 1  # only two rankable playlists left
    excluded = sp.csr_matrix(excluded)
    ids, scores = exact_top_k_excluding(users, items, item_ids, excluded, np.arange(40), 5, block=7)
    for u in range(40):
        banned = set(excluded[u].indices.tolist())
        ranked = sorted(((-float(users[u] @ items[j]), int(item_ids[j])) for j in range(30)
                         if int(item_ids[j]) not in banned))[:5]
        expected = [p for _, p in ranked]
        assert ids[u][ids[u] >= 0].tolist() == expected, u
    assert (ids[9] >= 0).sum() == 2 and np.isneginf(scores[9][2:]).all()
