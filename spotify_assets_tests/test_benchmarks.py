"""The benchmark harness at `tiny` scale: CLI, results schema, positive numbers, markdown.

No speed is asserted here (the targets live in the committed tables); the test checks that
a run writes well-formed results and that its subset and merge logic work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import REPO_ROOT, SCHEMA
from benchmarks.stages import STAGE_ORDER, STAGES

ROW_KEYS = {"stage", "method", "kind", "description", "unit", "input_rows", "output_rows", "seconds", "rows_per_s",
            "device", "extrapolated_from", "metrics", "wall_seconds", "peak_rss_mb", "processes", "threads",
            "threads_detail", "cpu"}
TABLE_HEADER = ("| stage | method | rate unit | input rows | output rows | seconds | rows/s | peak RSS MB | device | "
                "processes | threads | cpu | ours/naive | ours/peer | notes |")


def _bench(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The ingest stage (ours + naive) at tiny scale."""
    root = tmp_path_factory.mktemp("bench")
    done = _bench("run", "--scale", "tiny", "--stages", "ingest", "--cache", str(root / "cache"),
                  "--results", str(root / "results"), "--naive-budget", "2")
    return root, done


@pytest.fixture(scope="module")
def tiny_peers_run(tiny_run) -> tuple[Path, subprocess.CompletedProcess]:
    """The label and knn stages (ours + library peers, no naive) at tiny scale, on the data
    and ingest of ``tiny_run``, into their own results folder."""
    root, _ = tiny_run
    done = _bench("run", "--scale", "tiny", "--stages", "label,knn", "--no-naive", "--cache", str(root / "cache"),
                  "--results", str(root / "results_peers"), "--naive-budget", "5")
    return root / "results_peers", done


def _assert_records_what_ran(row: dict) -> None:
    """A row says on what CPU, in how many processes and on how many threads it ran."""
    assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
    assert isinstance(row["processes"], int) and row["processes"] >= 1, row["method"]
    assert isinstance(row["threads"], int) and row["threads"] >= 1, row["method"]
    assert row["threads_detail"], row["method"]
    assert row["cpu"]["model"] and isinstance(row["cpu"]["vector_flags"], list)


def test_help_explains_stages_targets_and_outputs() -> None:
    done = _bench("run", "--help")
    assert done.returncode == 0, done.stderr
    for word in ("--scale", "--stages", "--cache", "--naive-budget", "extrapolated", "implicit", "hnswlib",
                 "peak RSS", *STAGE_ORDER):
        assert word in done.stdout, word
    assert _bench("run", "--stages", "nope").returncode != 0


def test_tiny_run_writes_the_results_schema(tiny_run) -> None:
    root, done = tiny_run
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results" / "tiny.json").read_text())
    assert results["schema"] == SCHEMA and results["scale"] == "tiny" and results["seed"] == 0
    assert {"machine", "data", "rows", "comparisons", "targets", "naive_budget_seconds"} <= set(results)
    assert results["data"]["users"] == 200 and results["data"]["playlists"] == 500
    rows = {(r["stage"], r["method"]): r for r in results["rows"]}
    assert set(rows) == {("ingest", "ours"), ("ingest", "naive")}
    for row in rows.values():
        _assert_records_what_ran(row)
        assert row["input_rows"] > 0 and row["output_rows"] > 0
        assert row["seconds"] > 0 and row["rows_per_s"] > 0 and row["wall_seconds"] >= row["seconds"]
        assert row["peak_rss_mb"] > 10  # a Python interpreter with numpy loaded
        assert row["device"] == "cpu"
    ours, naive = rows[("ingest", "ours")], rows[("ingest", "naive")]
    assert ours["unit"] == naive["unit"] == "MPD track rows"
    assert naive["input_rows"] == ours["input_rows"] == results["data"]["track_rows"]
    assert ours["metrics"]["mpd_mb_per_s"] > 0 and naive["metrics"]["mpd_mb_per_s"] > 0
    # reader processes + the writer (one process when there is one reader)
    workers = ours["metrics"]["workers"]
    assert ours["processes"] == (workers + 1 if workers > 1 else 1)
    assert ours["threads"] == max(1, ours["metrics"]["duckdb_threads"])
    assert ours["metrics"]["slices_by_parser"] == {"orjson": ours["metrics"]["slices"]}
    assert ours["metrics"]["mpd_cpu_seconds"] > 0 and 0 <= ours["metrics"]["others_cpu_share"] <= 1
    comparisons = {(c["stage"], c["ratio"]): c["value"] for c in results["comparisons"]}
    assert set(comparisons) == {("ingest", "ours/naive")}
    assert all(v > 0 for v in comparisons.values())
    targets = {t["target"]: t for t in results["targets"]}
    assert {t.label for t in STAGES["ingest"].targets} == set(targets)
    for target in targets.values():
        assert target["value"] > 0 and isinstance(target["met"], bool)


def test_markdown_table_and_subset_rerun_merges(tiny_run) -> None:
    root, done = tiny_run
    assert done.returncode == 0, done.stderr[-3000:]
    report = (root / "results" / "tiny.md").read_text()
    assert TABLE_HEADER in report
    assert "## Targets" in report and ("met" in report or "MISSED" in report)
    # a second run of another stage keeps the first stage's rows and reuses the cached data;
    # without peers the ANN stage still runs the exact search (Annoy's ground truth)
    again = _bench("run", "--scale", "tiny", "--stages", "ann", "--no-peers", "--cache", str(root / "cache"),
                   "--results", str(root / "results"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "using cached tiny data" in again.stderr
    results = json.loads((root / "results" / "tiny.json").read_text())
    stages = {(r["stage"], r["method"]) for r in results["rows"]}
    assert stages == {("ingest", "ours"), ("ingest", "naive"), ("ann", "exact"), ("ann", "ours")}
    ann = next(r for r in results["rows"] if r["stage"] == "ann" and r["method"] == "ours")
    assert 0 < ann["metrics"]["recall_at_10"] <= 1 and ann["metrics"]["sweep"]
    assert (root / "cache" / "tiny" / "bench.log").read_text().count("[1/") >= 2


def test_naive_labeler_and_knn_agree_with_the_fast_kernels() -> None:
    """The naive baselines compute the same answers as the kernels they are compared with."""
    import numpy as np
    import scipy.sparse as sp

    from benchmarks.naive import knn_one_query_at_a_time, label_per_pair
    from spotify_assets.label.driver import label_users
    from spotify_assets.label.scores import exploration_coefficients
    from spotify_assets.train.knn import top_k_neighbors

    rng = np.random.default_rng(3)
    users = sp.csr_matrix((rng.random((60, 40)) < 0.15).astype(np.float32))
    playlists = sp.csr_matrix((rng.random((90, 40)) < 0.1).astype(np.float32))
    e = exploration_coefficients(60, 3)
    fast = label_users(users, playlists, e, block_size=7)
    slow = label_per_pair(users, playlists, e, np.arange(60), budget_s=60)
    assert slow.complete and slow.units == fast.scored_pairs
    for u, liked in slow.extra["liked"].items():
        np.testing.assert_array_equal(liked, fast.liked_playlists[fast.liked_indptr[u]:fast.liked_indptr[u + 1]])
    exact = top_k_neighbors(users, k=5)
    seen = []
    run = knn_one_query_at_a_time(users, np.arange(60), 5, 60,
                                  on_result=lambda u, nb, sims: seen.append((u, nb, sims)))
    assert run.complete and len(seen) == 60
    for u, _, sims in seen:
        np.testing.assert_allclose(sims, exact.similarities[u][exact.neighbors[u] >= 0], atol=1e-6)


def test_label_and_knn_peers_agree_with_ours_and_rows_record_what_ran(tiny_peers_run) -> None:
    """The DuckDB SQL labeler and sklearn's brute-force KNN run in the same run on the same
    data as ours, give the same answers, and every row records cpu, processes and threads."""
    results_dir, done = tiny_peers_run
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((results_dir / "tiny.json").read_text())
    rows = {(r["stage"], r["method"]): r for r in results["rows"]}
    assert set(rows) == {("label", "ours"), ("label", "duckdb-sql"), ("knn", "ours"), ("knn", "sklearn-brute")}
    for row in rows.values():
        _assert_records_what_ran(row)
        assert row["seconds"] > 0 and row["rows_per_s"] > 0
    label, sql = rows[("label", "ours")], rows[("label", "duckdb-sql")]
    assert sql["kind"] == "peer" and sql["unit"] == label["unit"] == "scored pairs"
    assert sql["input_rows"] == label["input_rows"] and sql["extrapolated_from"] is None  # whole input in budget
    assert sql["metrics"]["total_units"] == label["input_rows"]
    for key in ("liked_agreement", "hard_pool_agreement", "scored_pairs_agreement"):
        assert sql["metrics"][key] == 1.0, key
    assert sql["threads"] == sql["metrics"]["duckdb_threads"] == label["metrics"]["shards"]
    assert label["processes"] == 1 and label["threads"] == 1  # tiny: one shard, the scipy kernel
    knn, sk = rows[("knn", "ours")], rows[("knn", "sklearn-brute")]
    assert sk["kind"] == "peer" and sk["unit"] == knn["unit"] and sk["input_rows"] == knn["input_rows"]
    assert sk["extrapolated_from"] is None and sk["metrics"]["k"] == knn["metrics"]["k"]
    assert sk["metrics"]["similarity_agreement"] == 1.0 and sk["metrics"]["neighbor_agreement"] == 1.0
    assert (sk["processes"], sk["threads"]) == (1, 1)
    comparisons = {(c["stage"], c["ratio"]): c for c in results["comparisons"]}
    assert comparisons[("label", "ours/duckdb-sql")]["kind"] == "peer"
    assert comparisons[("knn", "ours/sklearn-brute")]["value"] > 0
    targets = {t["target"] for t in results["targets"]}
    assert {"scored pairs/s >= DuckDB SQL", "queries/s >= sklearn brute-force cosine"} <= targets
    report = (results_dir / "tiny.md").read_text()
    assert TABLE_HEADER in report
    assert "| label | duckdb-sql | scored pairs |" in report and "× duckdb-sql" in report
    assert "| knn | sklearn-brute | queries (users) |" in report and "× sklearn-brute" in report
    cpu = rows[("label", "ours")]["cpu"]["model"]
    assert f"A = {cpu}" in report


def test_peer_agreement_checks_catch_disagreement() -> None:
    """The peers' answers equal the kernels' on random data, and the agreement checks the
    benchmark rows report would flag a peer that answered differently."""
    import numpy as np
    import scipy.sparse as sp

    from benchmarks.peers import gather_rows, knn_agreement, knn_sklearn_brute, label_duckdb_sql, rows_equal
    from spotify_assets.label.driver import label_users
    from spotify_assets.label.scores import exploration_coefficients
    from spotify_assets.train.knn import top_k_neighbors

    rng = np.random.default_rng(5)
    users = sp.csr_matrix((rng.random((80, 40)) < 0.15).astype(np.float32))
    playlists = sp.csr_matrix((rng.random((120, 40)) < 0.1).astype(np.float32))
    e = exploration_coefficients(80, 5)
    fast = label_users(users, playlists, e, block_size=7)
    order = rng.permutation(80)

    def liked_agreement(exploration: np.ndarray) -> tuple[np.ndarray, object]:
        run = label_duckdb_sql(users, playlists, exploration, order, budget_s=60, threads=1)
        sql = run.extra["labels"]
        assert run.complete and run.units == fast.scored_pairs
        indptr, liked = gather_rows(fast.liked_indptr, fast.liked_playlists, sql.users)
        return rows_equal(indptr, liked, sql.liked_indptr, sql.liked_playlists), sql

    agree, sql = liked_agreement(e)
    assert agree.all() and np.array_equal(sql.users, np.arange(80))
    np.testing.assert_array_equal(sql.n_scored, fast.n_scored)
    hard_indptr, hard = gather_rows(fast.hard_indptr, fast.hard_playlists, sql.users)
    row = np.repeat(np.arange(80), np.diff(hard_indptr))
    assert rows_equal(hard_indptr, hard[np.lexsort((hard, row))], sql.hard_indptr, sql.hard_playlists).all()
    # a labeler with other exploration coefficients ranks differently: the check notices
    assert not liked_agreement(1.0 - e)[0].all()

    exact = top_k_neighbors(users, k=5)
    run = knn_sklearn_brute(users, order, 5, budget_s=60)
    done = run.extra["queries"]
    similarity_ok, neighbors_ok = knn_agreement(exact.neighbors[done], exact.similarities[done],
                                                run.extra["neighbors"], run.extra["similarities"])
    assert run.complete and similarity_ok.all() and neighbors_ok.all()
    # a peer answering another user's neighbours disagrees
    shifted = np.roll(np.arange(done.size), 1)
    similarity_ok, neighbors_ok = knn_agreement(exact.neighbors[done], exact.similarities[done],
                                                run.extra["neighbors"][shifted], run.extra["similarities"][shifted])
    assert not similarity_ok.all() and not neighbors_ok.all()


def test_bpr_stage_measures_the_update_and_per_epoch_negatives_beside_implicit(tiny_run) -> None:
    """The bpr stage (ours + implicit, tiny, two interleaved repeats) records what ran, the
    update that ran (the C kernel where it builds), the per-epoch-negatives rates, both
    targets against implicit, and every repeat's rate and load."""
    root, _ = tiny_run
    done = _bench("run", "--scale", "tiny", "--stages", "bpr", "--no-naive", "--threads", "1", "--repeats", "2",
                  "--cache", str(root / "cache"), "--results", str(root / "results_bpr"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results_bpr" / "tiny.json").read_text())
    rows = {r["method"]: r for r in results["rows"] if r["stage"] == "bpr"}
    assert set(rows) == {"ours", "implicit-bpr"}
    for row in rows.values():
        _assert_records_what_ran(row)
        assert row["threads"] == 1 and row["processes"] == 1
        # --repeats 2: the reported run is the slower one (lower median), both are kept
        assert [r["rows_per_s"] for r in row["repeats"]] and len(row["repeats"]) == 2
        assert row["rows_per_s"] == min(r["rows_per_s"] for r in row["repeats"])
        assert all(len(r["load_avg_1m"]) == 2 for r in row["repeats"])
    metrics = rows["ours"]["metrics"]
    assert metrics["uniform_negatives_per_s"] > 0 and metrics["hard_negatives_per_s"] > 0
    assert metrics["epoch_negatives_triplets"] == rows["implicit-bpr"]["metrics"]["interactions"]
    from spotify_assets.train.native import load_bpr_kernel

    assert metrics["compiled_update"] == (load_bpr_kernel() is not None)
    targets = {t["metric"]: t for t in results["targets"] if t["stage"] == "bpr"}
    assert set(targets) == {"ratio:implicit-bpr", "metric_ratio:uniform_negatives_per_s:implicit-bpr"}
    uniform = targets["metric_ratio:uniform_negatives_per_s:implicit-bpr"]
    assert uniform["value"] == pytest.approx(metrics["uniform_negatives_per_s"] / rows["implicit-bpr"]["rows_per_s"])
    report = (root / "results_bpr" / "tiny.md").read_text()
    assert "per epoch >= implicit BPR | " in report and "median of 2 runs (" in report
