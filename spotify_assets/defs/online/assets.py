"""The online loop: metrics from the service's log, the canary decision, simulated users.

``online_metrics`` turns the service's log (impressions, feedback, refused feedback) into DuckDB
tables and a PNG, so the Dagster UI is the dashboard; ``canary_decision`` promotes or rolls back
the candidate bundle by the stated rule in :mod:`spotify_assets.online.decisions`; the
``simulate_users`` op (job and schedule in ``jobs.py`` / ``schedules.py``) stands in for people.
"""

import time
from dataclasses import replace

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import LABELS, ONLINE_PLOT, ROLLOUT, SPLITS
from spotify_assets.ingest import transaction
from spotify_assets.defs.metadata import markdown_table, png_metadata, replace_tables, table_metadata
from spotify_assets.online.decisions import PROMOTE, ROLL_BACK, ArmCounts, CanaryRule, canary_verdict
from spotify_assets.online.metrics import ONLINE_TABLES, online_tables, plot_online, summary
from spotify_assets.online.simulate import NO_LIKE_POLICIES, draw_users, held_out_of_test_users, simulate_sessions
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, FeedbackStore, PipelineSettings
from spotify_assets.serving.rollout import CANDIDATE, CHAMPION, read_rollout, write_rollout
from spotify_assets.split.users import TEST, TRAIN

ONLINE_GROUP = "online"
OWNERS = ["team:serving"]


def _rounded(rows: list[dict]) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else str(v) if not isinstance(v, (int, str)) else v)
             for k, v in r.items()} for r in rows]


@dg.asset(
    group_name=ONLINE_GROUP, owners=OWNERS, kinds={"duckdb", "sqlite"},
    # refreshed by online_metrics_sensor when the service logs something new; built once when missing
    automation_condition=dg.AutomationCondition.on_missing(),
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[dg.AssetCheckSpec("like_rates_consistent", asset="online_metrics",
                                   description="Every like-rate is in [0, 1] with liked impressions <= impressions, "
                                               "and the per-day rows add up to the per-version totals.")],
)
def online_metrics(context: dg.AssetExecutionContext, feedback: FeedbackStore, warehouse: DuckDBWarehouse,
                   artifacts: ArtifactStore) -> dg.MaterializeResult:
    """What the service saw, from its log: like-rate per model version and per day (an impression
    is a list served; it is liked when feedback names it and likes a playlist), users giving
    feedback per day, feedback volume per day and cumulative, distinct users, refused feedback,
    cold-start share. DuckDB tables ``online_like_rate``, ``online_versions``, ``online_daily``
    and a PNG of them in the metadata."""
    started = time.perf_counter()
    rows = feedback.log().read_tables()
    tables = online_tables(rows)
    with warehouse.connect() as con:
        replace_tables(con, tables)
        metas = {name: table_metadata(con, name) for name in tables}
    with artifacts.writing(ONLINE_PLOT) as tmp:
        plot_online(tables, tmp)
    plot = artifacts.file(ONLINE_PLOT)
    versions = tables["online_versions"].to_pylist()
    daily = tables["online_daily"].to_pylist()
    by_day = tables["online_like_rate"].to_pylist()
    problems = [f"{r['model_version']} on {r['day']}: rate {r['like_rate']}" for r in by_day
                if not 0 <= r["like_rate"] <= 1 or r["liked_impressions"] > r["impressions"]]
    for v in versions:
        days = [r for r in by_day if r["model_version"] == v["model_version"]]
        if sum(r["impressions"] for r in days) != v["impressions"] or sum(r["liked_impressions"] for r in days) != v["likes"]:
            problems.append(f"{v['model_version']}: days do not add up to the total")
    headline = summary(tables, rows)
    context.log.info(f"online metrics: {headline}")
    return dg.MaterializeResult(
        metadata={
            **headline,
            "dagster/row_count": sum(t.num_rows for t in tables.values()),
            "tables": dg.MetadataValue.md(markdown_table(
                [{"table": n, "rows": tables[n].num_rows, "what": w} for n, w in ONLINE_TABLES.items()])),
            "like_rate_by_version": dg.MetadataValue.md(markdown_table(_rounded(
                [{k: v[k] for k in ("model_version", "arms", "impressions", "likes", "like_rate", "like_rate_low95",
                                    "like_rate_high95", "users", "cold_start_share")} for v in versions]))),
            "daily": dg.MetadataValue.md(markdown_table(_rounded(daily[-14:]))),
            "plot": png_metadata(plot, "online metrics"),
            "feedback_db": dg.MetadataValue.path(feedback.path),
            "online_daily_schema": metas["online_daily"]["dagster/column_schema"],
            "seconds": round(time.perf_counter() - started, 3),
        },
        check_results=[dg.AssetCheckResult(check_name="like_rates_consistent", passed=not problems,
                                           description="; ".join(problems[:5]) or "all like-rates consistent")],
    )


class CanaryConfig(dg.Config):
    min_impressions: int = Field(default=200, ge=1, description="Impressions each arm needs (since the candidate "
                                                                "was deployed) before the one decision is taken.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Level of the one-sided test.")
    margin: float = Field(default=0.0, ge=0, lt=1, description="Promote when the candidate's like-rate is at least "
                                                               "the champion's minus this margin (0: shown better).")


@dg.asset(
    group_name=ONLINE_GROUP, owners=OWNERS, kinds={"json", "duckdb"},
    # the DuckDB tables: a decision follows fresh metrics (the counts it reads come from the feedback log)
    deps=["online_metrics"], automation_condition=EAGER_WHEN_CHECKS_PASS,
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def canary_decision(context: dg.AssetExecutionContext, config: CanaryConfig, feedback: FeedbackStore,
                    artifacts: ArtifactStore, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Promotes the canary candidate to champion, rolls it back, or waits, by the rule in
    ``spotify_assets/online/decisions.py``: once both arms have ``min_impressions`` impressions
    since the candidate was deployed, promote when the one-sided two-proportion z-test says the
    candidate's like-rate is at least the champion's (less ``margin``) at level ``alpha``, else
    roll back. Rewrites ``serve/rollout.json`` (the service follows it) and appends to the
    DuckDB table ``canary_decisions``."""
    rule = CanaryRule(config.min_impressions, config.alpha, config.margin)
    root = artifacts.local_root()
    rollout = read_rollout(root)
    if rollout is None or rollout.candidate is None:
        reason = "no rollout yet" if rollout is None else f"no candidate: {rollout.champion.version} serves everyone"
        return dg.MaterializeResult(metadata={"decision": "no canary", "reason": reason, "rule": rule.describe(),
                                              "champion": rollout.champion.version if rollout else "none"})
    log = feedback.log()
    since = rollout.candidate.deployed_at
    champion = ArmCounts(*log.like_counts(rollout.champion.version, CHAMPION, since=since))
    candidate = ArmCounts(*log.like_counts(rollout.candidate.version, CANDIDATE, since=since))
    verdict = canary_verdict(champion, candidate, rule)
    before = (rollout.champion.version, rollout.candidate.version)
    if verdict.decision == PROMOTE:
        promoted = replace(rollout.candidate, like_rate_at_promotion=round(candidate.rate, 6))
        rollout = replace(rollout, champion=promoted, candidate=None, candidate_share=0.0).with_event(
            "promoted", version=promoted.version, replaced=before[0], reason=verdict.reason)
    elif verdict.decision == ROLL_BACK:
        rollout = replace(rollout, candidate=None, candidate_share=0.0).with_event(
            "rolled back", version=before[1], champion=before[0], reason=verdict.reason)
    if verdict.decision in (PROMOTE, ROLL_BACK):
        write_rollout(root, rollout)
        artifacts.publish(*ROLLOUT.path)
        row = {"decided_at": time.time(), "champion_version": before[0], "candidate_version": before[1],
               **verdict.as_row(), "rule": rule.describe()}
        with warehouse.connect() as con:
            _append_decision(con, row)
    context.log.info(f"canary {before[1]} vs {before[0]}: {verdict.decision} ({verdict.reason})")
    return dg.MaterializeResult(metadata={
        "decision": verdict.decision,
        "reason": verdict.reason,
        "rule": rule.describe(),
        "champion_before": before[0],
        "candidate": before[1],
        "champion_now": rollout.champion.version,
        "arms": dg.MetadataValue.md(markdown_table([
            {"arm": "champion", "version": before[0], "impressions": champion.impressions, "likes": champion.liked,
             "like-rate": round(champion.rate, 4)},
            {"arm": "candidate", "version": before[1], "impressions": candidate.impressions,
             "likes": candidate.liked, "like-rate": round(candidate.rate, 4)}])),
        "z": "n/a" if verdict.z is None else round(verdict.z, 4),
        "p_value": "n/a" if verdict.p_value is None else round(verdict.p_value, 6),
    })


def _append_decision(con, row: dict) -> None:
    table = pa.Table.from_pylist([row])
    con.register("_decision", table)
    try:
        with transaction(con):
            con.execute("CREATE TABLE IF NOT EXISTS canary_decisions AS SELECT * FROM _decision WHERE false")
            con.execute("INSERT INTO canary_decisions BY NAME SELECT * FROM _decision")
    finally:
        con.unregister("_decision")


class SimulateUsersConfig(dg.Config):
    service_url: str = Field(default="http://127.0.0.1:8000", description="The running service (loopback only).")
    users: int = Field(default=100, ge=1, le=10_000, description="Test-split users drawn for this run.")
    draw: int = Field(default=0, ge=0, description="Which seeded draw of users (the schedule uses its tick number).")
    no_like: str = Field(default="dismiss", description="When no recommended playlist is a held-out positive: "
                                                        "'dismiss' sends feedback that likes nothing, 'skip' sends "
                                                        "nothing.")
    k: int = Field(default=5, ge=1, le=100, description="Playlists asked per user.")
    max_seconds: float = Field(default=60.0, gt=0, le=600, description="Time budget of the run.")


@dg.op(
    out=dg.Out(dagster_type=dg.Nothing),
    tags=DUCKDB_OP_TAGS,
)
def simulate_users_op(context: dg.OpExecutionContext, config: SimulateUsersConfig, warehouse: DuckDBWarehouse,
                      artifacts: ArtifactStore, settings: PipelineSettings):
    """Draws ``users`` test-split users (seed + ``draw``), asks the running service for their top
    ``k``, likes the best-ranked recommended playlist that is one of the user's held-out
    positives (the labels stand in for a person), else dismisses or skips; records every request
    in the DuckDB table ``simulated_requests``."""
    if config.no_like not in NO_LIKE_POLICIES:
        raise dg.Failure(f"no_like must be one of {NO_LIKE_POLICIES}, got {config.no_like!r}")
    with warehouse.connect(read_only=True) as con:
        user_ids = [r[0] for r in con.execute("SELECT user_id FROM user_dictionary ORDER BY uid").fetchall()]
        pids = np.asarray([r[0] for r in con.execute(
            "SELECT pid FROM playlist_dictionary ORDER BY playlist_idx").fetchall()], np.int64)
    labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists")
    split = artifacts.read(SPLITS, "split")["split"]
    held_out = held_out_of_test_users(user_ids, labels["liked_indptr"], labels["liked_playlists"], split, pids,
                                      TEST, TRAIN)
    users = draw_users(list(held_out), config.users, settings.seed, config.draw)
    context.log.info(f"simulating {len(users)} of {len(held_out)} test-split users against {config.service_url}")
    records = simulate_sessions(config.service_url, users, held_out, k=config.k, no_like=config.no_like,
                                max_seconds=config.max_seconds)
    table = pa.Table.from_pylist([{"run_id": context.run_id, **r.row()} for r in records], schema=SIMULATED_SCHEMA)
    with warehouse.connect() as con:
        con.register("_requests", table)
        try:
            with transaction(con):
                con.execute("CREATE TABLE IF NOT EXISTS simulated_requests AS SELECT * FROM _requests WHERE false")
                con.execute("INSERT INTO simulated_requests BY NAME SELECT * FROM _requests")
        finally:
            con.unregister("_requests")
    asked = [r for r in records if r.endpoint == "recommend"]
    rated = [r for r in records if r.endpoint == "feedback"]
    likes = [r for r in rated if r.liked_pid is not None and r.status == 201]
    by_version: dict[str, list[int]] = {}
    for r in asked:
        if r.status == 200:
            by_version.setdefault(r.model_version, [0, 0])[0] += 1
    for r in likes:
        by_version.setdefault(r.model_version, [0, 0])[1] += 1
    errors = [r for r in records if r.error]
    yield dg.Output(None, metadata={
        "users": len(users),
        "requests": len(records),
        "lists_served": sum(r.status == 200 for r in asked),
        "likes": len(likes),
        "feedback_rows": sum(r.status == 201 for r in rated),
        "errors": len(errors),
        "first_errors": dg.MetadataValue.md(markdown_table([{"request": r.seq, "error": r.error} for r in errors[:5]])),
        "like_rate_by_version": dg.MetadataValue.md(markdown_table(
            [{"model_version": v, "lists": n, "likes": k, "like-rate": round(k / n, 4) if n else 0.0}
             for v, (n, k) in sorted(by_version.items())])),
        "p50_latency_ms": float(np.percentile([r.latency_ms for r in records], 50)) if records else 0.0,
    })
    if errors and len(errors) == len(records):
        raise dg.Failure(f"every request failed; first: {errors[0].error}")


SIMULATED_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("seq", pa.int64()), ("started_at", pa.float64()), ("user_id", pa.string()),
    ("endpoint", pa.string()), ("status", pa.int64()), ("latency_ms", pa.float64()), ("model_version", pa.string()),
    ("arm", pa.string()), ("impression_id", pa.int64()), ("liked_pid", pa.int64()), ("error", pa.string()),
])
