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
            "device", "extrapolated_from", "metrics", "wall_seconds", "peak_rss_mb"}


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
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["input_rows"] > 0 and row["output_rows"] > 0
        assert row["seconds"] > 0 and row["rows_per_s"] > 0 and row["wall_seconds"] >= row["seconds"]
        assert row["peak_rss_mb"] > 10  # a Python interpreter with numpy loaded
        assert row["device"] == "cpu"
    ours, naive = rows[("ingest", "ours")], rows[("ingest", "naive")]
    assert ours["unit"] == naive["unit"] == "MPD track rows"
    assert naive["input_rows"] == ours["input_rows"] == results["data"]["track_rows"]
    assert ours["metrics"]["mpd_mb_per_s"] > 0 and naive["metrics"]["mpd_mb_per_s"] > 0
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
    assert "| stage | method | rate unit | input rows | output rows | seconds | rows/s | peak RSS MB | device |" in report
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
