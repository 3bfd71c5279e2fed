"""Online metrics from the service's log (pure: DuckDB in memory, matplotlib for the plots).

Input: the rows of :meth:`spotify_assets.feedback.FeedbackLog.read_tables` (feedback,
impressions, refusals). Days are UTC dates. An impression (one list served) is liked when a
feedback row names it (``impression_id``) and likes one of its playlists; feedback that names no
impression counts in the volumes but not in a like-rate.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from spotify_assets.feedback.log import LOG_COLUMNS

#: table name -> what it holds (the asset's metadata lists them)
ONLINE_TABLES = {
    "online_like_rate": "like-rate per model version and day: impressions, liked impressions, cold-start share",
    "online_versions": "per model version over all days: impressions, likes, like-rate with a 95% Wilson "
                       "interval, users, cold-start share, arms, first and last served",
    "online_daily": "per day: impressions, feedback rows, likes, users giving feedback, new and distinct users, "
                    "cumulative feedback, refused feedback, cold-start share",
}

_ARROW_TYPES = {
    "feedback": (pa.int64(), pa.float64(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.int64()),
    "impressions": (pa.int64(), pa.float64(), pa.string(), pa.string(), pa.string(), pa.int64(), pa.int64()),
    "refusals": (pa.int64(), pa.float64(), pa.string(), pa.int64(), pa.string()),
}


def log_tables(rows: dict[str, list[tuple]]) -> dict[str, pa.Table]:
    """The log's rows as Arrow tables with fixed column types (empty tables keep their schema)."""
    out = {}
    for table, names in LOG_COLUMNS.items():
        columns = list(zip(*rows.get(table, []))) or [[] for _ in names]
        out[table] = pa.table({n: pa.array(list(c), t) for n, c, t in zip(names, columns, _ARROW_TYPES[table])})
    return out


_LIKED = """
    CREATE TEMP TABLE imp AS
    SELECT i.*, CAST(to_timestamp(i.served_at) AT TIME ZONE 'UTC' AS DATE) AS day,
           EXISTS (SELECT 1 FROM feedback f WHERE f.impression_id = i.impression_id
                   AND f.liked_pid IS NOT NULL) AS liked
    FROM impressions i
"""

_QUERIES = {
    "online_like_rate": """
        SELECT model_version, day, count(*) AS impressions, count(*) FILTER (WHERE liked) AS liked_impressions,
               count(*) FILTER (WHERE liked) / count(*) AS like_rate,
               avg(CAST(cold_start AS DOUBLE)) AS cold_start_share
        FROM imp GROUP BY ALL ORDER BY day, model_version
    """,
    "online_versions": """
        WITH v AS (
            SELECT model_version, count(*) AS impressions, count(*) FILTER (WHERE liked) AS likes,
                   count(DISTINCT user_id) AS users, avg(CAST(cold_start AS DOUBLE)) AS cold_start_share,
                   string_agg(DISTINCT arm, ',' ORDER BY arm) AS arms,
                   to_timestamp(min(served_at)) AS first_served, to_timestamp(max(served_at)) AS last_served
            FROM imp GROUP BY model_version
        ), r AS (SELECT *, likes / impressions AS p, 1.959964 AS z FROM v)
        SELECT model_version, split_part(model_version, '-', 1) AS model, arms, impressions, likes,
               p AS like_rate,
               (p + z*z / (2*impressions) - z * sqrt(p*(1-p)/impressions + z*z/(4*impressions*impressions)))
                   / (1 + z*z/impressions) AS like_rate_low95,
               (p + z*z / (2*impressions) + z * sqrt(p*(1-p)/impressions + z*z/(4*impressions*impressions)))
                   / (1 + z*z/impressions) AS like_rate_high95,
               users, cold_start_share, first_served, last_served
        FROM r ORDER BY first_served, model_version
    """,
    "online_daily": """
        WITH fb AS (SELECT *, CAST(to_timestamp(received_at) AT TIME ZONE 'UTC' AS DATE) AS day FROM feedback),
        first_seen AS (SELECT user_id, min(day) AS day FROM fb GROUP BY user_id),
        days AS (SELECT day FROM fb UNION SELECT day FROM imp
                 UNION SELECT CAST(to_timestamp(received_at) AT TIME ZONE 'UTC' AS DATE) FROM refusals),
        f AS (SELECT day, count(*) AS feedback_rows, count(*) FILTER (WHERE liked_pid IS NOT NULL) AS likes,
                     count(DISTINCT user_id) AS users_giving_feedback FROM fb GROUP BY day),
        n AS (SELECT day, count(*) AS new_users FROM first_seen GROUP BY day),
        i AS (SELECT day, count(*) AS impressions, avg(CAST(cold_start AS DOUBLE)) AS cold_start_share
              FROM imp GROUP BY day),
        r AS (SELECT CAST(to_timestamp(received_at) AT TIME ZONE 'UTC' AS DATE) AS day, count(*) AS refused_feedback
              FROM refusals WHERE endpoint = '/api/feedback' GROUP BY ALL)
        SELECT d.day, coalesce(i.impressions, 0) AS impressions, coalesce(f.feedback_rows, 0) AS feedback_rows,
               coalesce(f.likes, 0) AS likes, coalesce(f.users_giving_feedback, 0) AS users_giving_feedback,
               coalesce(n.new_users, 0) AS new_users,
               CAST(sum(coalesce(f.feedback_rows, 0)) OVER (ORDER BY d.day) AS BIGINT) AS cumulative_feedback_rows,
               CAST(sum(coalesce(n.new_users, 0)) OVER (ORDER BY d.day) AS BIGINT) AS distinct_users_so_far,
               coalesce(r.refused_feedback, 0) AS refused_feedback, i.cold_start_share
        FROM days d LEFT JOIN f USING (day) LEFT JOIN n USING (day) LEFT JOIN i USING (day) LEFT JOIN r USING (day)
        ORDER BY d.day
    """,
}


def online_tables(rows: dict[str, list[tuple]]) -> dict[str, pa.Table]:
    """The tables of :data:`ONLINE_TABLES` from the log's rows."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in log_tables(rows).items():
            con.register(name, table)
        con.execute(_LIKED)
        return {name: con.sql(sql).to_arrow_table() for name, sql in _QUERIES.items()}


def summary(tables: dict[str, pa.Table], rows: dict[str, list[tuple]]) -> dict[str, float | int]:
    """Headline numbers over all days."""
    impressions = rows.get("impressions", [])
    feedback = rows.get("feedback", [])
    return {
        "impressions": len(impressions),
        "feedback_rows": len(feedback),
        "likes": sum(1 for r in feedback if r[3] is not None),
        "distinct_users_giving_feedback": len({r[2] for r in feedback}),
        "refused_feedback": sum(1 for r in rows.get("refusals", []) if r[2] == "/api/feedback"),
        "cold_start_share": round(sum(r[5] for r in impressions) / len(impressions), 4) if impressions else 0.0,
        "model_versions": tables["online_versions"].num_rows,
    }


def plot_online(tables: dict[str, pa.Table], path: Path) -> Path:
    """One PNG, four panels: like-rate per model version and day (with each version's 95%
    interval over all days); feedback rows per day and cumulative; users giving feedback per
    day and distinct users so far; refused feedback and cold-start share per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = tables["online_like_rate"].to_pylist()
    versions = tables["online_versions"].to_pylist()
    daily = tables["online_daily"].to_pylist()
    # days as categories: a handful of days (often one) reads better than a sparse date axis
    days = [str(r["day"]) for r in daily]
    at = {d: i for i, d in enumerate(days)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100)
    ax = axes[0][0]
    for v in versions:
        points = [r for r in rate if r["model_version"] == v["model_version"]]
        xs = [at[str(r["day"])] for r in points]
        line, = ax.plot(xs, [r["like_rate"] for r in points], marker="o",
                        label=f"{v['model_version']} ({v['arms']}): {v['like_rate']:.3f} of {v['impressions']}")
        if points:
            ax.errorbar([xs[-1] + 0.1], [v["like_rate"]], color=line.get_color(), capsize=4, fmt="none",
                        yerr=[[v["like_rate"] - v["like_rate_low95"]], [v["like_rate_high95"] - v["like_rate"]]])
    ax.set_title("like-rate per model version and day (bar: 95% interval, all days)", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    x = list(range(len(days)))
    ax = axes[0][1]
    ax.bar(x, [r["feedback_rows"] for r in daily], color="#8fb3d9", label="feedback rows per day")
    ax.bar(x, [r["likes"] for r in daily], color="#2f6fb0", label="likes per day")
    twin = ax.twinx()
    twin.plot(x, [r["cumulative_feedback_rows"] for r in daily], color="black", marker="o", label="cumulative")
    twin.set_ylim(bottom=0)
    ax.set_title("feedback volume per day and cumulative", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    ax = axes[1][0]
    ax.bar(x, [r["users_giving_feedback"] for r in daily], color="#9bd09b", label="users giving feedback")
    ax.plot(x, [r["distinct_users_so_far"] for r in daily], color="black", marker="o", label="distinct users so far")
    ax.set_title("users per day and distinct users", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1][1]
    ax.bar(x, [r["refused_feedback"] for r in daily], color="#d98f8f", label="refused feedback")
    twin = ax.twinx()
    twin.plot(x, [r["cold_start_share"] or 0.0 for r in daily], color="#7a5c00", marker="o",
              label="cold-start share")
    twin.set_ylim(0, 1)
    ax.set_title("refused feedback per day; cold-start share of lists served", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    for row in axes:
        for a in row:
            a.set_xticks(x, days, fontsize=7, rotation=20)
            a.set_xlim(-0.6, max(len(days) - 0.4, 0.6))
            a.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
