"""The online loop's parts without a pipeline: the canary and degradation rules with
hand-computed answers, routing by a stable hash, the log's schema upgrade and like counts, the
service with a champion and a candidate (page, impressions, feedback versions, /metrics), the
sensors, and the simulator's loopback rule."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from spotify_assets.defs.online.sensors import engagement_degradation_sensor, online_metrics_sensor
from spotify_assets.feedback import FeedbackLog
from spotify_assets.feedback.log import Impression
from spotify_assets.online.decisions import (
    PROMOTE,
    ROLL_BACK,
    WAIT,
    ArmCounts,
    CanaryRule,
    canary_verdict,
    degradation_verdict,
)
from spotify_assets.online.simulate import check_loopback, draw_users
from spotify_assets.resources import ArtifactStore, FeedbackStore
from spotify_assets.serving.api import create_app
from spotify_assets.serving.rollout import Rollout, deploy_bundle, read_rollout, routes_to_candidate, write_rollout
from spotify_assets_tests.asgi import AsgiClient
from spotify_assets_tests.service_bundle import write_bundle


# -- rules --------------------------------------------------------------------------------

def test_canary_rule_known_answers() -> None:
    rule = CanaryRule(min_impressions=100, alpha=0.05)
    # 60/100 vs 40/100: z = 0.2 / sqrt(0.24/100 + 0.24/100) = 2.887, p = 0.0019
    better = canary_verdict(ArmCounts(100, 40), ArmCounts(100, 60), rule)
    assert better.decision == PROMOTE
    assert better.z == pytest.approx(0.2 / math.sqrt(0.0048)) and better.p_value == pytest.approx(0.001946, abs=1e-5)
    assert canary_verdict(ArmCounts(100, 60), ArmCounts(100, 40), rule).decision == ROLL_BACK
    # equal rates are not shown better; 45/100 vs 40/100 is not significant at 5% (z = 0.72)
    assert canary_verdict(ArmCounts(100, 40), ArmCounts(100, 40), rule).decision == ROLL_BACK
    assert canary_verdict(ArmCounts(100, 40), ArmCounts(100, 45), rule).decision == ROLL_BACK
    # with a 10-point non-inferiority margin, equal rates pass once the sample rules out a 10-point
    # loss (400 each: z = 0.1 / 0.0346 = 2.89), not before (100 each: z = 1.44, p = 0.074)
    assert canary_verdict(ArmCounts(400, 160), ArmCounts(400, 160), CanaryRule(100, 0.05, 0.1)).decision == PROMOTE
    assert canary_verdict(ArmCounts(100, 40), ArmCounts(100, 40), CanaryRule(100, 0.05, 0.1)).decision == ROLL_BACK
    # too few impressions on either arm: no decision yet
    assert canary_verdict(ArmCounts(99, 90), ArmCounts(500, 10), rule).decision == WAIT
    # zero variance: the sign decides, a tie rolls back
    assert canary_verdict(ArmCounts(100, 0), ArmCounts(100, 100), rule).decision == PROMOTE
    assert canary_verdict(ArmCounts(100, 0), ArmCounts(100, 0), rule).decision == ROLL_BACK
    with pytest.raises(ValueError):
        CanaryRule(min_impressions=0)


def test_degradation_rule() -> None:
    assert not degradation_verdict(None, ArmCounts(500, 1), 0.8, 200).degraded
    assert not degradation_verdict(0.5, ArmCounts(199, 0), 0.8, 200).degraded  # window not full
    assert not degradation_verdict(0.5, ArmCounts(200, 80), 0.8, 200).degraded  # 0.40 = 0.8 x 0.5
    verdict = degradation_verdict(0.5, ArmCounts(200, 79), 0.8, 200)
    assert verdict.degraded and "0.3950" in verdict.reason


def test_routing_is_stable_salted_and_close_to_the_share() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    first = [routes_to_candidate(u, 0.2, "bundle-a") for u in users]
    assert first == [routes_to_candidate(u, 0.2, "bundle-a") for u in users]  # stable
    assert abs(sum(first) / len(users) - 0.2) < 0.01
    other = [routes_to_candidate(u, 0.2, "bundle-b") for u in users]
    overlap = sum(a and b for a, b in zip(first, other)) / max(sum(first), 1)
    assert abs(overlap - 0.2) < 0.03  # another candidate gets another, independent slice
    assert not any(routes_to_candidate(u, 0.0, "x") for u in users[:100])
    assert all(routes_to_candidate(u, 1.0, "x") for u in users[:100])
    # a bigger share keeps everyone the smaller share had
    wider = [routes_to_candidate(u, 0.5, "bundle-a") for u in users]
    assert all(w for f, w in zip(first, wider) if f)


def test_simulated_users_stay_on_loopback_and_draws_are_seeded() -> None:
    assert check_loopback("http://127.0.0.1:8000") == ("127.0.0.1", 8000)
    for url in ("http://example.com:8000", "https://127.0.0.1:8000", "http://10.0.0.1", "ftp://localhost"):
        with pytest.raises(ValueError, match="local service only"):
            check_loopback(url)
    people = [f"u{i}" for i in range(50)]
    assert draw_users(people, 10, seed=0, draw=3) == draw_users(list(reversed(people)), 10, seed=0, draw=3)
    assert draw_users(people, 10, seed=0, draw=3) != draw_users(people, 10, seed=0, draw=4)
    assert len(set(draw_users(people, 80, seed=1, draw=0))) == 50


# -- the log ------------------------------------------------------------------------------

def test_a_first_release_log_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite"
    with sqlite3.connect(path) as con:  # the schema before no-like rows, versions and impressions
        con.execute("CREATE TABLE feedback (feedback_id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, "
                    "user_id TEXT NOT NULL, liked_pid INTEGER NOT NULL, shown_pids TEXT NOT NULL)")
        con.execute("INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids) VALUES (1.0, 'old', 7, '[7, 8]')")
    log = FeedbackLog(path)
    assert log.add("new", None, [1, 2], known_user=True, model_version="als-1") == 2
    assert log.add("new", 2, [1, 2], known_user=True, model_version="als-1") == 3
    rows = log.read()
    assert rows.feedback_id.tolist() == [1, 3] and rows.liked_pid.tolist() == [7, 2]  # likes only, ids kept
    assert log.stats() == (3, 3) and log.stats(known_only=True) == (2, 3)  # a dismissal is no training positive
    tables = log.read_tables()
    assert tables["feedback"][0][:4] == (1, 1.0, "old", 7) and tables["feedback"][1][3] is None


def test_like_counts_by_version_arm_time_and_window(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.sqlite")
    ids = log.add_impressions([Impression(f"u{i}", "v1", "champion" if i % 2 else "candidate", False, True, [1, 2])
                               for i in range(10)])
    assert ids == list(range(1, 11))
    for i in (1, 3, 4):  # likes on impressions 2 (champion), 4 (champion), 5 (candidate); a dismissal on 7
        log.add(f"u{i}", 1, [1, 2], known_user=True, impression_id=ids[i])
    log.add("u6", None, [1, 2], known_user=True, impression_id=ids[6])
    assert log.like_counts("v1") == (10, 3)
    assert log.like_counts("v1", "champion") == (5, 2) and log.like_counts("v1", "candidate") == (5, 1)
    assert log.like_counts("v1", first=3) == (3, 1) and log.like_counts("v1", last=3) == (3, 0)
    assert log.like_counts("v2") == (0, 0) and log.like_counts("v1", since=2e9) == (0, 0)
    assert FeedbackLog(tmp_path / "none.sqlite").like_counts("v1") == (0, 0)


# -- a service with a champion and a candidate ---------------------------------------------

@pytest.fixture()
def canary(tmp_path: Path):
    artifacts = tmp_path / "artifacts"
    champion_facts = write_bundle(artifacts, seed=1)
    champion = deploy_bundle(artifacts)
    write_bundle(artifacts, seed=2)
    candidate = deploy_bundle(artifacts)
    write_rollout(artifacts, Rollout(champion=champion, candidate=candidate, candidate_share=0.5))
    log = FeedbackLog(tmp_path / "feedback.sqlite")
    with AsgiClient(create_app(artifacts, log.path)) as client:
        yield client, log, champion_facts, read_rollout(artifacts)


def _post(client: AsgiClient, path: str, body: object):
    return client.request("POST", path, json.dumps(body).encode())


def test_service_routes_by_arm_and_records_versions(canary) -> None:
    client, log, facts, rollout = canary
    users = facts.user_ids[:120]
    reply = _post(client, "/api/playlist/recommend", {"user_ids": users, "k": 3})
    assert reply.status == 200
    lists = reply.json()
    for user in lists:
        expected = rollout.arm_of(user["user_id"])
        assert user["arm"] == expected
        assert user["model_version"] == rollout.deployment(expected).version
    arms = [u["arm"] for u in lists]
    assert 30 < arms.count("candidate") < 90  # about half
    assert [u["impression_id"] for u in lists] == list(range(1, 121))
    served = log.read_tables()["impressions"]
    assert [(r[2], r[3], r[4]) for r in served] == [(u["user_id"], u["model_version"], u["arm"]) for u in lists]
    # feedback on a candidate's list records the candidate's version; liking nothing is stored too
    mine = next(u for u in lists if u["arm"] == "candidate")
    shown = [p["pid"] for p in mine["playlists"]]
    reply = _post(client, "/api/feedback", {"user_id": mine["user_id"], "liked_playlist": shown[1],
                                            "shown_playlists": shown, "impression_id": mine["impression_id"]})
    assert reply.status == 201 and reply.json()["model_version"] == rollout.candidate.version
    reply = _post(client, "/api/feedback", {"user_id": mine["user_id"], "liked_playlist": None,
                                            "shown_playlists": shown})
    assert reply.status == 201 and reply.json()["model_version"] == rollout.candidate.version
    # an impression of another user, or another list, is refused and recorded as a refusal
    other = next(u for u in lists if u["user_id"] != mine["user_id"])
    for body in ({"user_id": other["user_id"], "liked_playlist": None, "shown_playlists": shown,
                  "impression_id": mine["impression_id"]},
                 {"user_id": mine["user_id"], "liked_playlist": shown[0], "shown_playlists": shown[:2],
                  "impression_id": mine["impression_id"]},
                 {"user_id": mine["user_id"], "shown_playlists": shown}):
        assert _post(client, "/api/feedback", body).status == 422
    tables = log.read_tables()
    assert [(r[3], r[5], r[6]) for r in tables["feedback"]] == [
        (shown[1], rollout.candidate.version, mine["impression_id"]), (None, rollout.candidate.version, None)]
    assert [r[3] for r in tables["refusals"]] == [422, 422, 422]
    assert "liked_playlist" in tables["refusals"][2][4]
    assert log.like_counts(rollout.candidate.version, "candidate") == (arms.count("candidate"), 1)


def test_metrics_endpoint_speaks_prometheus(canary) -> None:
    client, log, facts, rollout = canary
    _post(client, "/api/playlist/recommend", {"user_ids": [*facts.user_ids[:10], "stranger"]})
    _post(client, "/api/feedback", {"user_id": "x"})  # refused
    client.request("GET", "/healthz")
    reply = client.request("GET", "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    lists = {k: v for k, v in samples.items() if k[0] == "spotify_recommendation_lists_total"}
    assert sum(lists.values()) == 11
    assert samples[("spotify_http_requests_total", (("method", "POST"), ("route", "/api/feedback"),
                                                    ("status", "422")))] == 1
    assert samples[("spotify_http_errors_total", (("kind", "client"), ("route", "/api/feedback")))] == 1
    assert samples[("spotify_http_request_seconds_count", (("route", "/api/playlist/recommend"),))] == 1
    cold = sum(v for k, v in lists.items() if ("cold_start", "true") in k[1])
    assert samples[("spotify_cold_start_share", ())] == pytest.approx(cold / 11) and cold >= 1  # the stranger
    infos = {dict(k[1])["arm"]: dict(k[1])["version"] for k, v in samples.items()
             if k[0] == "spotify_model_info" and v == 1}
    assert infos == {"champion": rollout.champion.version, "candidate": rollout.candidate.version}
    assert samples[("spotify_canary_candidate_share", ())] == 0.5
    assert samples[("spotify_feedback_log_rows", ())] == 0


def test_page_renders_escaped_lists_with_a_cold_start_badge(canary) -> None:
    client, log, facts, rollout = canary
    reply = client.request("GET", "/", content_type=None)
    assert reply.status == 200 and "Content-Security-Policy" in {k.title(): v for k, v in reply.headers.items()}
    assert "<datalist" in reply.body.decode() and 'id="recommendations"' not in reply.body.decode()
    page = client.request("GET", f"/?user_id={facts.user_ids[3]}", content_type=None).body.decode()
    assert page.count('class="like"') == 5 and 'id="cold-start"' not in page
    assert f'data-user="{facts.user_ids[3]}"' in page and 'data-impression="1"' in page
    stranger = client.request("GET", "/?user_id=%3Cscript%3Ealert(1)%3C/script%3E", content_type=None).body.decode()
    assert 'id="cold-start"' in stranger and "<script>alert" not in stranger and "&lt;script&gt;" in stranger
    assert client.request("GET", "/static/page.js", content_type=None).status == 200


# -- sensors ------------------------------------------------------------------------------

def test_online_metrics_sensor_runs_once_per_log_state(tmp_path: Path) -> None:
    store = FeedbackStore(path=str(tmp_path / "feedback.sqlite"))
    with dg.instance_for_test() as instance:
        def tick(cursor):
            return online_metrics_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                 resources={"feedback": store}))

        assert not tick(None).run_requests  # nothing logged yet
        store.log().add_impressions([Impression("u", "v1", "champion", False, True, [1])])
        first = tick(None)
        assert len(first.run_requests) == 1
        assert not tick(first.cursor).run_requests
        store.log().add("u", 1, [1], known_user=True, impression_id=1)
        assert len(tick(first.cursor).run_requests) == 1


def test_degradation_sensor_requests_a_retrain_once_per_champion(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    write_bundle(artifacts, seed=1)
    champion = deploy_bundle(artifacts)
    champion = replace(champion, like_rate_at_promotion=0.5)  # as if a canary had measured 0.5
    write_rollout(artifacts, Rollout(champion=champion))
    store = FeedbackStore(path=str(tmp_path / "feedback.sqlite"))
    resources = {"feedback": store, "artifacts": ArtifactStore(root=str(artifacts))}
    log = store.log()

    def serve(n: int, liked_every: int) -> None:
        ids = log.add_impressions([Impression(f"u{i}", champion.version, "champion", False, True, [1])
                                   for i in range(n)])
        for k, i in enumerate(ids):
            if k % liked_every == 0:
                log.add(f"u{k}", 1, [1], known_user=True, impression_id=i)

    with dg.instance_for_test() as instance:
        def tick(cursor):
            return engagement_degradation_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                         resources=resources))

        serve(200, 2)  # like-rate 0.5: as at promotion
        assert not tick(None).run_requests
        serve(200, 5)  # latest 200 at 0.2 < 0.8 x 0.5
        fired = tick(None)
        assert len(fired.run_requests) == 1 and fired.cursor == champion.version
        assert fired.run_requests[0].tags["spotify_assets/like_rate"] == "0.2000"
        assert not tick(fired.cursor).run_requests  # once per champion version



def test_the_loop_is_wired_in_the_definitions() -> None:
    from spotify_assets.definitions import defs

    schedule = defs.resolve_schedule_def("simulate_users_schedule")
    assert schedule.job_name == "simulate_users" and schedule.cron_schedule == "*/10 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # needs a running service: off by default
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=_utc(2026, 1, 1, 0, 10))
        request = schedule.evaluate_tick(context).run_requests[0]
    assert request.run_config["ops"]["simulate_users_op"]["config"]["draw"] == 2_945_377  # 10-minute ticks since 1970
    assert defs.resolve_sensor_def("online_metrics_sensor").job_name == "online_job"
    assert defs.resolve_sensor_def("engagement_degradation_sensor").job_name == "feedback_retrain_job"
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "online"} == {
        "online_metrics", "canary_decision"}
    assert graph.get(dg.AssetKey("serving_rollout")).group_name == "serve"
    assert dg.AssetKey("serving_rollout") in defs.resolve_job_def("feedback_retrain_job").asset_layer.executable_asset_keys


def _utc(*parts: int):
    from datetime import datetime, timezone

    return datetime(*parts, tzinfo=timezone.utc)
