"""The online loop end to end on `tiny` data: two bundles (ALS and the song ranker) deployed as
champion and canary candidate, a real service routing users between them, simulated users
liking what the labels say they like, online metrics, and the canary decision promoting a
better candidate and rolling back a worse one; the page in headless Chromium; the degradation
sensor."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from spotify_assets.defs.feedback.assets import feedback_positives
from spotify_assets.defs.jobs import simulate_users
from spotify_assets.defs.online.assets import canary_decision, online_metrics
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.serve.assets import playlist_index, recommendations, serving_model, serving_rollout, user_index
from spotify_assets.feedback import FeedbackLog
from spotify_assets.serving.rollout import read_rollout
from spotify_assets_tests.servers import _start, _stop, free_port, wait_http
from spotify_assets_tests.test_label_split_assets import CHAIN, run_chain
from spotify_assets_tests.test_serving_assets import MODELS, TRAIN_CONFIG

pytestmark = pytest.mark.slow

BUILD = [serving_model, playlist_index, user_index, recommendations, serving_rollout]
MIN_IMPRESSIONS = 40


def _deploy(data_dir: Path, model: str, share: float) -> None:
    result = run_chain(data_dir, assets=BUILD, run_config={"ops": {
        "serving_model": {"config": {"model": model}}, "serving_rollout": {"config": {"candidate_share": share}}}})
    assert result.success


@pytest.fixture(scope="module")
def trained(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("online") / "data"
    shutil.copytree(tiny_raw, data_dir / "raw")
    # `tiny` users have one or two liked playlists, so few warm users hold test positives; half the
    # users cold (every positive held out as test) gives the simulation ~100 distinct test users,
    # and the canary is decided on users the models never saw a like from.
    config = {"ops": {**TRAIN_CONFIG["ops"], "user_splits": {"config": {"cold_share": 0.5}}}}
    result = run_chain(data_dir, assets=[*CHAIN, feedback_positives, *MODELS], run_config=config)
    assert result.success
    return data_dir


@pytest.fixture()
def service(trained: Path, tmp_path: Path):
    """A copy of the trained data and a service on it (started lazily, stopped at the end)."""
    data_dir = tmp_path / "data"
    shutil.copytree(trained, data_dir)
    port = free_port()
    processes = []

    def start() -> str:
        env = {**os.environ, "SPOTIFY_ASSETS_LOG_LEVEL": "warning"}
        log = tmp_path / "service.log"
        process = _start([sys.executable, "-m", "spotify_assets.serving", "--data-dir", str(data_dir), "serve",
                          "--port", str(port)], env, log)
        processes.append(process)
        wait_http(f"http://127.0.0.1:{port}/healthz", 120, process, log)
        return f"http://127.0.0.1:{port}"

    try:
        yield data_dir, start
    finally:
        for process in processes:
            _stop(process)


def _simulate(data_dir: Path, base: str, draw: int) -> dg.ExecuteJobResult:
    resources = build_resources(data_dir)
    result = simulate_users.execute_in_process(resources=resources, run_config={"ops": {"simulate_users_op": {
        "config": {"service_url": base, "users": 1000, "draw": draw, "max_seconds": 120}}}})
    assert result.success
    return result


def _decide(data_dir: Path) -> dict:
    resources = build_resources(data_dir)
    result = dg.materialize([online_metrics, canary_decision], resources=resources, run_config={"ops": {
        "canary_decision": {"config": {"min_impressions": MIN_IMPRESSIONS}}}})
    assert result.success
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def _health(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/healthz", timeout=30) as response:
        return json.loads(response.read())


def _run_canary(data_dir: Path, base: str, champion: str) -> tuple[dict, list[tuple]]:
    """Simulate users until both arms have enough impressions; then decide."""
    rollout = read_rollout(data_dir / "artifacts")
    assert rollout.champion.model == champion and rollout.candidate is not None
    for draw in range(1, 6):
        _simulate(data_dir, base, draw)
        log = FeedbackLog(data_dir / "serving" / "feedback.sqlite")
        counts = [log.like_counts(d.version, arm, since=rollout.candidate.deployed_at)[0]
                  for d, arm in ((rollout.champion, "champion"), (rollout.candidate, "candidate"))]
        print(f"draw {draw}: impressions per arm {counts}")
        if min(counts) >= MIN_IMPRESSIONS:
            break
    events = _decide(data_dir)
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        versions = con.execute("SELECT model_version, impressions, likes, like_rate FROM online_versions").fetchall()
    return events, versions


def test_canary_promotes_a_better_candidate_and_rolls_back_a_worse_one(service) -> None:
    data_dir, start = service
    _deploy(data_dir, "als", 0.0)  # champion
    _deploy(data_dir, "song_ranker", 0.5)  # candidate for half of the users
    rollout = read_rollout(data_dir / "artifacts")
    als, ranker = rollout.champion.version, rollout.candidate.version
    base = start()
    assert _health(base)["versions"] == {"champion": als, "candidate": ranker}

    events, versions = _run_canary(data_dir, base, "als")
    decision = events["canary_decision"]
    rates = {v: r for v, _, _, r in versions}
    print(f"\npromotion run: {decision['arms'].value}\n{decision['reason'].value}")
    assert rates[ranker] > rates[als]
    assert decision["decision"].value == "promote", decision["reason"].value
    after = read_rollout(data_dir / "artifacts")
    assert after.champion.version == ranker and after.candidate is None
    assert after.champion.like_rate_at_promotion == pytest.approx(rates[ranker], abs=0.2)
    assert _health(base)["versions"] == {"champion": ranker}  # the running service followed the rollout
    metrics = events["online_metrics"]
    assert metrics["impressions"].value > 2 * MIN_IMPRESSIONS and metrics["likes"].value > 0
    assert "data:image/png;base64," in metrics["plot"].value

    # ALS comes back as the candidate: worse than the champion now, so it is rolled back
    _deploy(data_dir, "als", 0.5)
    assert _health(base)["versions"] == {"champion": ranker, "candidate": als}
    events, _ = _run_canary(data_dir, base, "song_ranker")
    decision = events["canary_decision"]
    print(f"\nrollback run: {decision['arms'].value}\n{decision['reason'].value}")
    assert decision["decision"].value == "roll back", decision["reason"].value
    final = read_rollout(data_dir / "artifacts")
    assert final.champion.version == ranker and final.candidate is None
    assert [e["event"] for e in final.history] == ["deployed as champion", "deployed as candidate", "promoted",
                                                   "deployed as candidate", "rolled back"]
    assert _health(base)["versions"] == {"champion": ranker}
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        decisions = con.execute("SELECT decision, candidate_version FROM canary_decisions ORDER BY decided_at").fetchall()
        requests = con.execute("SELECT count(*), count(DISTINCT run_id), count(*) FILTER (WHERE error IS NOT NULL) "
                               "FROM simulated_requests").fetchone()
    assert decisions == [("promote", ranker), ("roll back", als)]
    assert requests[0] > 0 and requests[2] == 0


CHROMIUM = Path("/usr/bin/chromium")
PAGE_ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "page"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_page_in_chromium_recommends_and_stores_a_like(service) -> None:
    from playwright.sync_api import expect, sync_playwright

    data_dir, start = service
    _deploy(data_dir, "song_ranker", 0.0)
    base = start()
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        user = con.execute("SELECT user_id FROM recommendations WHERE NOT cold_start ORDER BY uid LIMIT 1").fetchone()[0]
    PAGE_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = FeedbackLog(data_dir / "serving" / "feedback.sqlite")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1200})
            page.set_default_timeout(30_000)
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(base + "/")
            page.fill("#user_id", user)
            page.click("#show")
            items = page.locator("ol.recs li")
            expect(items).to_have_count(5)
            expect(page.locator("#cold-start")).to_have_count(0)
            expect(items.first.locator(".tracks")).to_contain_text("—")  # "Title — Artist" of its first tracks
            expect(page.locator(".shared").first).to_contain_text("Songs you share")
            liked_pid = int(items.nth(1).get_attribute("data-pid"))
            items.nth(1).locator("button.like").click()
            status = items.nth(1).locator(".status")
            expect(status).to_contain_text("Stored as feedback #1")
            page.screenshot(path=str(PAGE_ARTIFACTS / "page_liked.png"), full_page=True)
            rows = log.read_tables()["feedback"]
            assert [(r[2], r[3]) for r in rows] == [(user, liked_pid)]
            assert rows[0][5].startswith("song_ranker-") and rows[0][6] == 1  # version and impression recorded
            # a user the model does not know gets the popularity list, with the badge
            page.goto(base + "/?user_id=someone-new")
            expect(page.locator("#cold-start")).to_be_visible()
            expect(page.locator("ol.recs li")).to_have_count(5)
            page.screenshot(path=str(PAGE_ARTIFACTS / "page_cold_start.png"), full_page=True)
            assert failed == []  # nothing requested from anywhere else
        finally:
            browser.close()
