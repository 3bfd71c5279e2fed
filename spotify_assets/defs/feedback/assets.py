"""User feedback from the HTTP service, as training positives for the next run."""

import time

import dagster as dg
import numpy as np

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import FEEDBACK_POSITIVES, LABELS, OWNERSHIP, SPLITS, deps
from spotify_assets.defs.metadata import markdown_table
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, ArtifactStore, DuckDBWarehouse, FeedbackStore
from spotify_assets.feedback import training_pairs
from spotify_assets.split.users import TRAIN

FEEDBACK_GROUP = "feedback"


@dg.asset(
    group_name=FEEDBACK_GROUP, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"sqlite", "numpy"},
    deps=[*deps(LABELS, SPLITS, OWNERSHIP), "user_dictionary", "playlist_dictionary"],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
    check_specs=[dg.AssetCheckSpec("feedback_never_leaks_held_out", asset="feedback_positives", blocking=True,
                                   description="No feedback positive is one of its user's validation or test positives.")],
)
def feedback_positives(context: dg.AssetExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse,
                       feedback: FeedbackStore) -> dg.MaterializeResult:
    """Likes stored by ``POST /api/feedback`` mapped to dense (user, playlist) train positives,
    with the shown-but-not-liked playlists as their negatives (feedback that likes nothing is
    not a positive and is left out). ``training_interactions`` adds them to what every model
    trains on; likes that are held-out validation/test answers are dropped so evaluation stays
    honest."""
    started = time.perf_counter()
    log = feedback.log()
    _, up_to = log.stats()
    rows = log.read(up_to_id=up_to)
    with warehouse.connect(read_only=True) as con:
        user_ids = [r[0] for r in con.execute("SELECT user_id FROM user_dictionary ORDER BY uid").fetchall()]
        pids = np.asarray([r[0] for r in con.execute("SELECT pid FROM playlist_dictionary ORDER BY playlist_idx").fetchall()],
                          np.int64)
    labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists")
    split = artifacts.read(SPLITS, "split")["split"]
    owner = artifacts.read(OWNERSHIP, "owner")["owner"]
    pairs = training_pairs(rows, dict(zip(user_ids, range(len(user_ids)))), pids, labels["liked_indptr"],
                           labels["liked_playlists"], split, owner, TRAIN)
    path = artifacts.write(FEEDBACK_POSITIVES, users=pairs.users, playlists=pairs.playlists,
                           negative_indptr=pairs.negative_indptr, negatives=pairs.negatives,
                           up_to_feedback_id=np.array([up_to], np.int64))
    # the check recomputes the leak test from the labels, independently of training_pairs' bookkeeping
    liked_users = np.repeat(np.arange(labels["liked_indptr"].size - 1, dtype=np.int64), np.diff(labels["liked_indptr"]))
    stride = np.int64(owner.size + 1)
    held_keys = liked_users[split != TRAIN] * stride + labels["liked_playlists"][split != TRAIN]
    leaks = int(np.isin(pairs.users * stride + pairs.playlists, held_keys).sum())
    context.log.info(f"feedback: {rows.feedback_id.size} rows up to id {up_to} -> {pairs.users.size} positives")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "feedback_db": dg.MetadataValue.path(feedback.path),
            "up_to_feedback_id": up_to,
            "positives": int(pairs.users.size),
            "negatives": int(pairs.negatives.size),
            "counts": dg.MetadataValue.md(markdown_table([{"what": k, "rows": v} for k, v in pairs.counts.items()])),
            "seconds": round(time.perf_counter() - started, 3),
        },
        check_results=[dg.AssetCheckResult(check_name="feedback_never_leaks_held_out", passed=leaks == 0,
                                           description=f"{leaks} feedback positives are held-out answers")],
    )
