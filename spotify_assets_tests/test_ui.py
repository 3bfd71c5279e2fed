"""The Dagster UI in a real (headless Debian) Chromium: graph, a launched run, metadata, and the
results of a materialized pipeline (the leaderboard's and the online metrics' tables and plots).

Needs /usr/bin/chromium (`make test` installs it with apt when missing). Screenshots are
written to test-artifacts/ui/; the README shows the ones of the results.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import shutil
from pathlib import Path

import duckdb
import pytest

from spotify_assets.resources import PROJECT_ROOT
from spotify_assets_tests.servers import dagster_servers

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
LOCATION = "spotify_assets.definitions"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture()
def ui(data_dir: Path, tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    env.update({"DAGSTER_HOME": str(home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir)})
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with dagster_servers(env, ARTIFACTS / "logs") as base:
        yield base, data_dir


def test_asset_graph_launch_and_metadata(ui) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, data_dir = ui
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)

            # 1. the ingest group's graph shows its assets (the community pop-up dismissed, the
            #    nodes' statuses loaded before the screenshot)
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/ingest")
            for name in ("mpd_playlists", "mpd_playlist_tracks", "entp_listens", "msd_songs"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=90_000)
            _dismiss_dialogs(page)
            _settled(page)
            page.screenshot(path=str(ARTIFACTS / "01_ingest_group.png"))

            # 2. the other stages' groups show their key assets
            for group, asset in (("staging", "stg_playlists"), ("label", "liked_playlists"),
                                 ("tracks", "track_embeddings"), ("serve", "playlist_index"),
                                 ("evaluate", "model_leaderboard")):
                page.goto(f"{base}/locations/{LOCATION}/asset-groups/{group}")
                expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=90_000)
            _dismiss_dialogs(page)
            _settled(page)
            page.screenshot(path=str(ARTIFACTS / "02_evaluate_group.png"))

            # 3. launch a materialization of entp_listens from its asset page
            page.goto(f"{base}/assets/entp_listens")
            _dismiss_dialogs(page)
            materialize = page.get_by_role("button", name=re.compile(r"Materialize"))
            expect(materialize.first).to_be_enabled(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "03_asset_page.png"))
            materialize.first.click()
            expect(page.get_by_text(re.compile(r"Launched run|run started|Run started", re.I)).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "04_launched.png"))

            # 4. the run the click launched (the slice sensor launches others meanwhile)
            #    succeeds; its run page shows it.
            run_id = _wait_for_run(base, "entp_listens", timeout=240)
            page.goto(f"{base}/runs/{run_id}")
            expect(page.get_by_text("Success").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "05_run_success.png"))

            # 5. the asset page shows its row count metadata
            page.goto(f"{base}/assets/entp_listens")
            _dismiss_dialogs(page)
            page.screenshot(path=str(ARTIFACTS / "06_asset_metadata.png"), full_page=True)
            with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
                n_rows = con.execute("SELECT count(*) FROM entp_listens").fetchall()[0][0]
            assert n_rows > 0
            expect(page.get_by_text("Row count").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text(f"{n_rows:,}", exact=True).first).to_be_visible(timeout=60_000)
        finally:
            browser.close()


def _dismiss_dialogs(page) -> None:
    """Close the one-time 'Join the Dagster community' dialog (it appears a moment after the
    first page loads), and check nothing modal is left over the page."""
    try:
        page.get_by_role("dialog").first.wait_for(state="visible", timeout=5_000)
    except Exception:  # noqa: BLE001 - no dialog this time
        return
    for label in ("Dismiss", "Skip", "No thanks", "Close", "Not now"):
        button = page.get_by_role("dialog").get_by_role("button", name=label)
        if button.count():
            button.first.click(timeout=5_000)
            break
    else:
        page.keyboard.press("Escape")
    page.get_by_role("dialog").first.wait_for(state="hidden", timeout=10_000)


def _settled(page) -> None:
    """Wait until no 'Loading...' placeholder is left (asset nodes fetch their status lazily)."""
    page.wait_for_function("() => !document.body.innerText.includes('Loading')", timeout=90_000)


_RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }
"""


def _wait_for_run(base: str, asset: str, timeout: float) -> str:
    """Poll the GraphQL API until a run that targets ``asset`` finishes; return its id."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{base}/graphql", data=json.dumps({"query": _RUNS_QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["data"]["runsOrError"]["results"]
        mine = [r for r in runs if any(a["path"] == [asset] for a in (r["assetSelection"] or []))]
        if mine:
            status = mine[0]["status"]
            if status == "SUCCESS":
                return mine[0]["runId"]
            assert status not in ("FAILURE", "CANCELED"), f"run {mine[0]['runId']} ended {status}"
        time.sleep(1.0)
    raise TimeoutError(f"no successful run of {asset} within {timeout}s (last status {status})")


# -- the results of a materialized run -----------------------------------------------------

RESULTS = PROJECT_ROOT / "test-artifacts" / "ui_results"


def _materialize_results(data_dir: Path, home: Path) -> None:
    """Into the UI's instance: the pipeline up to the leaderboard and a served bundle on `tiny`,
    traffic through the service's app (lists, likes of held-out positives, dismissals, refusals),
    then the online metrics."""
    import dagster as dg
    import numpy as np

    from spotify_assets.defs.feedback.assets import feedback_positives
    from spotify_assets.defs.ingest.partitions import mpd_slices
    from spotify_assets.defs.online.assets import canary_decision, online_metrics
    from spotify_assets.defs.resources import build_resources
    from spotify_assets.defs.serve.assets import playlist_index, recommendations, serving_model, serving_rollout
    from spotify_assets.ingest import list_mpd_slices
    from spotify_assets.online.simulate import held_out_of_test_users
    from spotify_assets.serving.api import create_app
    from spotify_assets.split.users import TEST, TRAIN
    from spotify_assets_tests.asgi import AsgiClient
    from spotify_assets_tests.test_label_split_assets import CHAIN
    from spotify_assets_tests.test_serving_assets import MODELS, TRAIN_CONFIG

    resources = build_resources(data_dir)
    keys = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    config = {"ops": {**TRAIN_CONFIG["ops"], "user_splits": {"config": {"cold_share": 0.5}}}}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(mpd_slices.name, keys)
        built = dg.materialize([*CHAIN, feedback_positives, *MODELS, serving_model, playlist_index, recommendations,
                                serving_rollout], resources=resources, instance=instance, run_config=config, tags=tags)
        assert built.success
        with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
            users = [r[0] for r in con.execute("SELECT user_id FROM user_dictionary ORDER BY uid").fetchall()]
            pids = np.array([r[0] for r in con.execute("SELECT pid FROM playlist_dictionary ORDER BY playlist_idx").fetchall()])
        labels = np.load(data_dir / "artifacts" / "label" / "labels.npz")
        split = np.load(data_dir / "artifacts" / "split" / "user_splits.npz")["split"]
        held = held_out_of_test_users(users, labels["liked_indptr"], labels["liked_playlists"], split, pids, TEST, TRAIN)
        app = create_app(data_dir / "artifacts", data_dir / "serving" / "feedback.sqlite")
        with AsgiClient(app) as client:
            for user in [*sorted(held), "someone-new"]:
                served = client.request("POST", "/api/playlist/recommend", json.dumps({"user_ids": [user]}).encode()).json()[0]
                shown = [p["pid"] for p in served["playlists"]]
                liked = next((p for p in shown if p in held.get(user, ())), None)
                client.request("POST", "/api/feedback", json.dumps({
                    "user_id": user, "liked_playlist": liked, "shown_playlists": shown,
                    "impression_id": served["impression_id"]}).encode())
            client.request("POST", "/api/feedback", b'{"user_id": "x"}')  # refused: counted as a block
        online = dg.materialize([online_metrics, canary_decision], resources=resources, instance=instance)
        assert online.success


def test_results_of_a_materialized_run_render(data_dir: Path, tmp_path: Path) -> None:
    """The leaderboard's and the online metrics' tables and plots render on their asset pages."""
    from playwright.sync_api import expect, sync_playwright

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    env.update({"DAGSTER_HOME": str(home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir)})
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "SPOTIFY_ASSETS_DATA_DIR")}
    os.environ.update({"DAGSTER_HOME": str(home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir)})
    try:
        _materialize_results(data_dir, home)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if RESULTS.exists():
        shutil.rmtree(RESULTS)
    RESULTS.mkdir(parents=True)
    with dagster_servers(env, RESULTS / "logs", daemon=False) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            for asset, image, texts in (
                    ("model_leaderboard", "test Recall@10 and NDCG@10 by model and segment",
                     ("song_ranker", "oracle")),
                    ("online_metrics", "online metrics", ("like_rate_by_version", "like_rate_low95"))):
                page.goto(f"{base}/assets/{asset}")
                _dismiss_dialogs(page)
                expect(page.get_by_text(texts[0]).first).to_be_visible(timeout=90_000)
                expect(page.get_by_text(texts[1]).first).to_be_visible()
                # markdown tables render as tables, not as pipes in a paragraph
                assert page.locator("table table, td table").count() > 0
                _settled(page)
                page.screenshot(path=str(RESULTS / f"{asset}.png"), full_page=True)
                # the plot opens from its metadata row and is a real, decoded image
                row = page.locator("tr", has=page.get_by_text("plot", exact=True)).first
                row.get_by_text(re.compile("Show Markdown")).first.click()
                plot = page.get_by_role("dialog").get_by_role("img", name=image)
                expect(plot).to_be_visible(timeout=60_000)
                width = plot.evaluate("img => img.complete ? img.naturalWidth : 0")
                assert width > 300, f"{asset}: the plot did not render (naturalWidth {width})"
                page.screenshot(path=str(RESULTS / f"{asset}_plot.png"))
                page.get_by_role("dialog").get_by_role("button", name="Close").click()
        finally:
            browser.close()
