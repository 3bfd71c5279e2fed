"""User splits, playlist ownership, the training interactions and evaluation batches.

Every random draw derives from ``settings.seed``; every asset carries blocking checks
(no leakage between splits, ownership never touches held-out positives, no held-out pair
among the training interactions, eval batches valid), because training and evaluation downstream trust them.
"""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import scipy.sparse as sp
from pydantic import Field

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import (
    EVAL_BATCHES,
    FEEDBACK_POSITIVES,
    INTERACTIONS,
    LABELS,
    OWNERSHIP,
    SONG_COUNTS,
    SPLITS,
    deps,
)
from spotify_assets.evaluate.tasks import RankingTask, ranking_tasks
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.label.scores import LIKED_SHARE, liked_counts
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb
from spotify_assets.resources import ArtifactStore, PipelineSettings
from spotify_assets.feedback import load_feedback_positives
from spotify_assets.split.checks import check_eval_batches_valid, check_ownership_valid, check_no_split_overlap
from spotify_assets.split.interactions import check_interactions_hold_out
from spotify_assets.split.ownership import assign_ownership, ownership_gini
from spotify_assets.split.sampling import sample_eval_batches
from spotify_assets.split.users import TEST, TRAIN, VAL, split_users
from spotify_assets.split.interactions import training_interactions as training_interactions_from

SPLIT = "split"
#: what the eval-batch sampler reads of labels.npz (not the scores or the ownership candidates)
SAMPLING_ARRAYS = ("liked_indptr", "liked_playlists", "hard_indptr", "hard_playlists")


def _check(name: str, asset: str, passed: bool, description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=bool(passed), description=description,
                               metadata=metadata)


def labelled_liked_share(instance: dg.DagsterInstance) -> float:
    """The ``liked_share`` the latest ``liked_playlists`` materialization labelled with (its
    metadata), or the default for a materialization older than that record."""
    event = instance.get_latest_materialization_event(dg.AssetKey(LABELS.asset))
    materialization = event.asset_materialization if event is not None else None
    recorded = materialization.metadata.get("liked_share") if materialization is not None else None
    return float(recorded.value) if recorded is not None else LIKED_SHARE


class SplitConfig(dg.Config):
    cold_share: float = Field(default=0.05, ge=0, lt=1)
    """Share of users whose positives are all held out (the cold-start segment)."""
    min_positives: int = Field(default=5, ge=1)
    """Users with fewer positives keep them all in train."""


@dg.asset(
    group_name=SPLIT, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy"},
    deps=deps(LABELS, SONG_COUNTS),
    check_specs=[
        dg.AssetCheckSpec("liked_counts_match_formula", asset="user_splits", blocking=True,
                          description="Each user has max(1, ceil(liked_share n)) liked playlists (0 when n = 0), "
                          "with the liked_share liked_playlists was labelled with."),
        dg.AssetCheckSpec("scores_finite_positive", asset="user_splits", blocking=True,
                          description="Every liked score is finite and > 0; playlist ids are in range."),
        dg.AssetCheckSpec("no_pair_in_two_splits", asset="user_splits", blocking=True,
                          description="No (user, playlist) pair carries two split labels."),
    ],
)
def user_splits(context: dg.AssetExecutionContext, config: SplitConfig, artifacts: ArtifactStore,
                settings: PipelineSettings) -> dg.MaterializeResult:
    """Per liked pair a split (0 train, 1 val, 2 test) and per user a cold flag: cold users
    hold out all positives (test); users with < min_positives keep all in train; the rest
    split 70/20/10."""
    labels = artifacts.read(LABELS, "n_scored", "liked_indptr", "liked_playlists", "liked_scores")
    n_playlists = int(artifacts.read(SONG_COUNTS, "p")["p"].size)
    result = split_users(labels["liked_indptr"], settings.seed, config.cold_share, config.min_positives)
    path = artifacts.write(SPLITS, split=result.split, cold=result.cold)
    users = np.repeat(np.arange(labels["n_scored"].size), np.diff(labels["liked_indptr"]))
    counts = np.bincount(result.split, minlength=3) if result.split.size else np.zeros(3, int)
    n_liked = np.diff(labels["liked_indptr"])
    liked_share = labelled_liked_share(context.instance)
    formula_ok = np.array_equal(n_liked, liked_counts(labels["n_scored"], liked_share))
    scores = labels["liked_scores"]
    scores_ok = bool(np.all(np.isfinite(scores)) and np.all(scores > 0)
                     and (labels["liked_playlists"].size == 0 or labels["liked_playlists"].max() < n_playlists))
    overlap_ok, duplicates = check_no_split_overlap(users, labels["liked_playlists"], result.split)
    light = int(((n_liked > 0) & (n_liked < config.min_positives) & ~result.cold).sum())
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "splits": dg.MetadataValue.md(markdown_table([
                {"split": "train", "pairs": int(counts[TRAIN])},
                {"split": "val", "pairs": int(counts[VAL])},
                {"split": "test", "pairs": int(counts[TEST])},
            ])),
            "cold_users": int(result.cold.sum()),
            "light_users_all_train": light,
            "users_without_positives": int((n_liked == 0).sum()),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[
            _check("liked_counts_match_formula", "user_splits", formula_ok,
                   ("liked counts follow" if formula_ok else "liked counts differ from")
                   + f" max(1, ceil({liked_share:g} n))", liked_share=liked_share),
            _check("scores_finite_positive", "user_splits", scores_ok, f"{scores.size} liked scores checked",
                   min_score=float(scores.min()) if scores.size else 0.0),
            _check("no_pair_in_two_splits", "user_splits", overlap_ok, f"{duplicates} duplicated pairs"),
        ],
    )


class OwnershipConfig(dg.Config):
    cap: int = Field(default=100, ge=1)
    """At most this many playlists per owner."""


@dg.asset(
    group_name=SPLIT, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy"},
    deps=deps(LABELS, SPLITS),
    check_specs=[
        dg.AssetCheckSpec("never_owns_held_out_positive", asset="playlist_ownership", blocking=True,
                          description="No owner has the playlist among their val/test positives; cap respected; "
                          "every owner is one of the playlist's candidates; no cold user owns a playlist."),
        dg.AssetCheckSpec("candidates_not_exhausted", asset="playlist_ownership",
                          description="No playlist ran out of ownership candidates (then the result equals the "
                          "greedy over all scored pairs); otherwise raise ownership_k."),
    ],
)
def playlist_ownership(context: dg.AssetExecutionContext, config: OwnershipConfig, artifacts: ArtifactStore
                       ) -> dg.MaterializeResult:
    """Owner per playlist (-1 = none): greedy by priority score/sqrt(s) over all scored pairs
    (the labeler's top candidates per playlist), at most ``cap`` playlists per user, never a
    playlist that is one of the owner's val/test positives, and nothing for a cold user (it
    stays without any training interaction)."""
    try:
        labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists", "ownership_users", "ownership_priorities")
    except KeyError as missing:
        raise dg.Failure("liked_playlists has no ownership candidates: rematerialize it with ownership_k > 0") \
            from missing
    splits = artifacts.read(SPLITS, "split", "cold")
    split, cold = splits["split"], splits["cold"]
    candidates = OwnershipCandidates.from_arrays(labels["ownership_users"], labels["ownership_priorities"])
    result = assign_ownership(candidates, labels["liked_indptr"], labels["liked_playlists"], split, config.cap,
                              cold=cold)
    path = artifacts.write(OWNERSHIP, owner=result.owner, owned_counts=result.owned_counts)
    verdict = check_ownership_valid(result.owner, labels["liked_indptr"], labels["liked_playlists"], split,
                                    config.cap, candidates, cold=cold)
    owners = result.owned_counts[result.owned_counts > 0]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "owned_playlists": int((result.owner >= 0).sum()),
            "unowned_playlists": result.unowned,
            "owners": int(owners.size),
            "ownership_gini": round(ownership_gini(result.owned_counts), 4),
            "max_owned_per_user": int(result.owned_counts.max(initial=0)),
            "cap": config.cap,
            "candidates_per_playlist": int(candidates.k),
            "exhausted_playlists": int(result.exhausted),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[
            _check("never_owns_held_out_positive", "playlist_ownership", verdict.passed,
                   f"{verdict.failures} invalid ownerships", **{k: v for k, v in verdict.details.items()
                                                                  if isinstance(v, int | float | str)}),
            dg.AssetCheckResult(asset_key="playlist_ownership", check_name="candidates_not_exhausted",
                                passed=result.exhausted == 0, severity=dg.AssetCheckSeverity.WARN,
                                description=f"{result.exhausted} playlists exhausted their candidate lists"),
        ],
    )


@dg.asset(
    group_name=SPLIT, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy"},
    deps=deps(LABELS, SPLITS, OWNERSHIP, FEEDBACK_POSITIVES),
    check_specs=[dg.AssetCheckSpec("holds_no_held_out_pair", asset="training_interactions", blocking=True,
                                   description="No validation or test positive is a training interaction.")],
)
def training_interactions(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    """Everything a model may learn from, as one binary (users x playlists) CSR: the train-split
    likes, the feedback likes (held-out answers already removed) and the owned playlists.
    Every model trains on it and negatives are drawn outside it every epoch; validation and
    test positives never reach it (checked)."""
    labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists")
    split = artifacts.read(SPLITS, "split")["split"]
    owner = artifacts.read(OWNERSHIP, "owner")["owner"]
    feedback = load_feedback_positives(artifacts)
    result = training_interactions_from(labels["liked_indptr"], labels["liked_playlists"], split, owner,
                                        None if feedback is None else feedback["users"],
                                        None if feedback is None else feedback["playlists"])
    path = save_interactions(artifacts, result.matrix)
    verdict = check_interactions_hold_out(result.matrix, labels["liked_indptr"], labels["liked_playlists"], split)
    per_user = np.diff(result.matrix.indptr)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "interactions": result.counts["total"],
            "sources": dg.MetadataValue.md(markdown_table([{"source": k, "pairs": v} for k, v in result.counts.items()])),
            "users_with_history": int((per_user > 0).sum()),
            "users_without_history": int((per_user == 0).sum()),
            "playlists_with_an_interaction": int(np.unique(result.matrix.indices).size),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[_check("holds_no_held_out_pair", "training_interactions", verdict.passed,
                              f"{verdict.failures} held-out pairs among the training interactions",
                              **verdict.details)],
    )


class EvalConfig(dg.Config):
    n_negatives: int = Field(default=50, ge=2)
    """Negatives per held-out positive (half hard, half easy)."""


@dg.asset(
    group_name=SPLIT, automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"numpy"},
    deps=deps(LABELS, SPLITS, OWNERSHIP),
    check_specs=[dg.AssetCheckSpec("eval_batches_valid", asset="eval_batches", blocking=True,
                                   description="Positives are held out (never train, never owned); negatives distinct, "
                                   "never liked, never owned.")],
)
def eval_batches(context: dg.AssetExecutionContext, config: EvalConfig, artifacts: ArtifactStore,
                 settings: PipelineSettings) -> dg.MaterializeResult:
    """Validation and test batches: per held-out positive, 1 positive + n_negatives negatives."""
    started = time.perf_counter()
    labels = artifacts.read(LABELS, *SAMPLING_ARRAYS)
    stored = artifacts.read(SPLITS, "split", "cold")
    owner = artifacts.read(OWNERSHIP, "owner")["owner"]
    arrays, problems, rows = {}, 0, {}
    for name, which in (("val", VAL), ("test", TEST)):
        batch = sample_eval_batches(labels["liked_indptr"], labels["liked_playlists"], stored["split"], which,
                                  labels["hard_indptr"], labels["hard_playlists"], owner, stored["cold"], owner.size,
                                  settings.seed, config.n_negatives)
        ok, bad = check_eval_batches_valid(batch, labels["liked_indptr"], labels["liked_playlists"], stored["split"],
                                         which, owner, owner.size)
        problems += bad
        rows[name] = int(batch.users.size)
        arrays.update({f"{name}_users": batch.users, f"{name}_positives": batch.positives,
                       f"{name}_negatives": batch.negatives, f"{name}_cold": batch.cold})
    seconds = time.perf_counter() - started
    path = artifacts.write(EVAL_BATCHES, **arrays)
    sampled = sum(rows.values()) * config.n_negatives
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "val_rows": rows["val"],
            "test_rows": rows["test"],
            "test_rows_cold_users": int(arrays["test_cold"].sum()),
            "negatives_per_row": config.n_negatives,
            "seconds": round(seconds, 3),
            "negatives_per_second": round(sampled / max(seconds, 1e-9)),
            "peak_rss_mb": peak_rss_mb(),
        },
        check_results=[_check("eval_batches_valid", "eval_batches", problems == 0, f"{problems} invalid rows")],
    )


def save_interactions(artifacts: ArtifactStore, matrix: sp.csr_matrix) -> Path:
    """Write the training interactions CSR (``indptr``, ``indices``, ``shape``) atomically."""
    return artifacts.write(INTERACTIONS, indptr=matrix.indptr.astype(np.int64), indices=matrix.indices.astype(np.int32),
                           shape=np.asarray(matrix.shape, np.int64))


def load_interactions(artifacts: ArtifactStore) -> sp.csr_matrix:
    """The training interactions as a binary float32 CSR (n_users, n_playlists)."""
    arrays = artifacts.read(INTERACTIONS, "indptr", "indices", "shape")
    return sp.csr_matrix((np.ones(arrays["indices"].size, np.float32), arrays["indices"], arrays["indptr"]),
                         shape=tuple(int(x) for x in arrays["shape"]))


def held_out_tasks(artifacts: ArtifactStore, interactions: sp.csr_matrix | None = None,
                   min_positives: int = 5) -> tuple[RankingTask, RankingTask]:
    """The validation and test full-ranking tasks (:func:`spotify_assets.evaluate.tasks.ranking_tasks`)
    from the stored labels, splits and training interactions."""
    labels = artifacts.read(LABELS, "liked_indptr", "liked_playlists")
    stored = artifacts.read(SPLITS, "split", "cold")
    matrix = load_interactions(artifacts) if interactions is None else interactions
    return ranking_tasks(matrix, labels["liked_indptr"], labels["liked_playlists"], stored["split"], stored["cold"],
                         min_positives)
