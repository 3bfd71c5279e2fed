"""The Dagster UI in a real (headless Debian) Chromium: graph, a launched run, metadata.

Needs /usr/bin/chromium (`make test` installs it with apt when missing). Screenshots are
written to test-artifacts/ui/.
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
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)

            # 1. the ingest group's graph shows its assets
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/ingest")
            for name in ("mpd_playlists", "mpd_playlist_tracks", "entp_listens", "msd_songs"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "01_ingest_group.png"))

            # 2. the other stages' groups show their key assets
            for group, asset in (("staging", "stg_playlists"), ("label", "liked_playlists"),
                                 ("tracks", "track_embeddings"), ("serve", "playlist_index"),
                                 ("evaluate", "model_leaderboard")):
                page.goto(f"{base}/locations/{LOCATION}/asset-groups/{group}")
                expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=90_000)
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
    """Close the one-time 'Join the Dagster community' dialog if it shows up."""
    for label in ("Dismiss", "Skip", "No thanks", "Close"):
        button = page.get_by_role("button", name=label)
        if button.count():
            try:
                button.first.click(timeout=2_000)
            except Exception:  # noqa: BLE001 - the dialog may vanish on its own
                pass


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
