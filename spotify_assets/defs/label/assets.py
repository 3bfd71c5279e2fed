"""Exploration coefficients and the fused, blocked labeler (liked playlists + hard pools).

``liked_playlists`` fans out over user shards (Dagster dynamic outputs): each shard is its
own step, so shards run in parallel on the multiprocess executor or on a Dask/Kubernetes
cluster, and each step processes its shard block by block (memory bounded by
``block_size``). A merge step concatenates the shards in user order.
"""

import time

import dagster as dg
from pydantic import Field, field_validator
import numpy as np

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.label.driver import block_ranges, label_users
from spotify_assets.label.labels import merge_label_files, merge_labels
from spotify_assets.label.scores import LIKED_SHARE, exploration_coefficients
from spotify_assets.label.torch_kernel import resolve_device
from spotify_assets.contract import EXPLORATION, LABEL_SHARDS, LABELS, PLAYLIST_SONG, SONG_COUNTS, USER_SONG, deps
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb
from spotify_assets.resources import ArtifactStore, PipelineSettings

LABEL = "label"


def _n_users(artifacts: ArtifactStore) -> int:
    """Users in the matrices, from the small per-user song counts (not the whole matrix)."""
    return int(artifacts.read(SONG_COUNTS, "s")["s"].size)


@dg.asset(name="exploration_coefficients", group_name=LABEL, automation_condition=EAGER_WHEN_CHECKS_PASS,
          kinds={"numpy"}, deps=deps(SONG_COUNTS))
def exploration_coefficients_artifact(
    context: dg.AssetExecutionContext, artifacts: ArtifactStore, settings: PipelineSettings
) -> dg.MaterializeResult:
    """e(u) ~ Beta(1.3, 3.3) per user, drawn once in user-id order from the configured seed."""
    n_users = _n_users(artifacts)
    e = exploration_coefficients(n_users, settings.seed)
    path = artifacts.write(EXPLORATION, e=e)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "users": n_users,
            "seed": settings.seed,
            "mean": float(e.mean()) if e.size else 0.0,
            "quantiles (10/50/90%)": ", ".join(f"{q:.3f}" for q in np.quantile(e, [0.1, 0.5, 0.9])) if e.size else "",
        }
    )


class LabelConfig(dg.Config):
    """How the labeler splits the work."""

    shards: int = Field(default=2, ge=1)
    """Steps to fan out to (one per core locally; more on a cluster)."""
    block_size: int = Field(default=512, ge=1)
    """Users per overlap block inside a step. Peak memory grows linearly with it; at bench
    scale 512 was also the fastest measured (smaller blocks stay in cache)."""
    liked_share: float = Field(default=0.015, gt=0, le=1)
    """A user likes the top max(1, ceil(liked_share * n)) of their n scored playlists."""
    hard_share: float = Field(default=0.2, ge=0, le=1)
    """Hard-negative pool: this share of the remaining scored playlists, by score."""
    max_hard_candidates: int = Field(default=0, ge=0)
    """Cap on each user's stored hard-negative pool (0 = keep the whole pool); a capped pool
    is a seeded, block-independent subsample. Needed at full scale, where pools are ~4k/user."""
    ownership_k: int = Field(default=48, ge=0)
    """Ownership candidates kept per playlist (top by score/sqrt(s) over all scored pairs)."""
    device: str = "auto"
    """'auto' uses torch kernels on the GPU when one exists, else the scipy CPU kernel;
    'scipy', 'cuda' or 'cpu' (torch on the CPU) force one."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "scipy", "cuda", "cpu"):
            raise ValueError("device must be 'auto', 'scipy', 'cuda' or 'cpu'")
        return value


def shard_plans(n_users: int, config: LabelConfig, seed: int, shards: int | None = None) -> list[dict]:
    """What each label shard step gets: ``shards`` (default ``config.shards``) contiguous user
    ranges of equal size (the last one shorter; fewer ranges when there are fewer users)
    with the labeler's settings."""
    shards = config.shards if shards is None else shards
    if shards < 1 or config.block_size < 1:
        raise dg.Failure("shards and block_size must be >= 1")
    size = max(1, -(-n_users // shards))
    return [{"start": start, "stop": stop, "block_size": config.block_size, "liked_share": config.liked_share,
             "hard_share": config.hard_share, "device": config.device,
             "max_hard_candidates": config.max_hard_candidates, "ownership_k": config.ownership_k, "seed": seed}
            for start, stop in block_ranges(n_users, size)]


@dg.op(
    ins={"start_after": dg.In(dg.Nothing)},
    out=dg.DynamicOut(dict, io_manager_key="json_io_manager"),
)
def plan_label_shards(context: dg.OpExecutionContext, config: LabelConfig, artifacts: ArtifactStore,
                      settings: PipelineSettings):
    """Cut the users into ``shards`` contiguous ranges, one step each."""
    for plan in shard_plans(_n_users(artifacts), config, settings.seed):
        yield dg.DynamicOutput(plan, mapping_key=f"users_{plan['start']}_{plan['stop']}")


@dg.op(out=dg.Out(dict, io_manager_key="json_io_manager"))
def label_shard(context: dg.OpExecutionContext, shard: dict, artifacts: ArtifactStore) -> dict:
    """Score and label one user range block by block; write its arrays; return their path."""
    start, stop = shard["start"], shard["stop"]
    if shard.get("empty"):  # a static fan-out with more slots than users (see static_liked_playlists)
        return {"start": start, "stop": stop, "empty": True}
    device = resolve_device(shard["device"])
    user_song = artifacts.read_csr(USER_SONG)
    playlist_song = artifacts.read_csr(PLAYLIST_SONG)
    e = artifacts.read(EXPLORATION, "e")["e"]
    if e.shape[0] != user_song.shape[0]:
        raise dg.Failure("exploration_coefficients is stale: its user count differs from user_song_matrix")
    started = time.perf_counter()
    last_log = [started]

    def progress(done: int, total: int, scored: int) -> None:
        now = time.perf_counter()
        if now - last_log[0] > 10 or done == stop:
            last_log[0] = now
            context.log.info(f"users {start}-{stop}: {done - start:,}/{stop - start:,} labelled, {scored:,} pairs "
                             f"scored, {scored / max(now - started, 1e-9) / 1e6:.1f}M pairs/s")

    labels = label_users(
        user_song, playlist_song, e, block_size=int(shard["block_size"]), liked_share=shard["liked_share"],
        hard_share=shard["hard_share"], progress=progress, device=device,
        max_hard_candidates=int(shard["max_hard_candidates"]) or None, seed=int(shard["seed"]),
        ownership_k=int(shard["ownership_k"]), start=start, stop=stop,
    )
    piece = f"{start:09d}-{stop:09d}.npz"
    artifacts.write(LABEL_SHARDS, piece=piece, **labels.arrays(include_optional=True))
    # the piece's name, not a local path: the merge may run on another machine
    return {"start": start, "stop": stop, "piece": piece, "scored_pairs": labels.scored_pairs,
            "seconds": time.perf_counter() - started, "device": device, "peak_rss_mb": peak_rss_mb(),
            "liked_share": float(shard["liked_share"])}


@dg.op(out=dg.Out(dict, io_manager_key="json_io_manager"))
def merge_label_shards(context: dg.OpExecutionContext, shards: list, artifacts: ArtifactStore):
    """Concatenate shard results in user order (ownership candidates merged to the exact
    top k of the union) into ``label/labels.npz``."""
    yield from _merge_shards(shards, artifacts)


def _merge_shards(shards: list[dict], artifacts: ArtifactStore):
    shards = sorted((s for s in shards if not s.get("empty")), key=lambda shard: shard["start"])
    if shards:
        # array by array from the shard files: memory holds one array, not every shard plus the merge
        with artifacts.writing(LABELS) as tmp:
            summary = merge_label_files([artifacts.file(LABEL_SHARDS, piece=s["piece"]) for s in shards], tmp)
    else:  # no users at all
        empty = merge_labels([])
        artifacts.write(LABELS, **empty.arrays(include_optional=True))
        summary = {"users": 0, "users_with_liked": 0, "liked_pairs": 0, "hard_pool_entries": 0,
                   "n_scored_median": 0.0, "ownership_k": 0}
    path = artifacts.url(*LABELS.path)
    compute_seconds = sum(shard["seconds"] for shard in shards)
    scored_pairs = sum(int(shard["scored_pairs"]) for shard in shards)
    table = markdown_table([
        {"shard": f"{s['start']}-{s['stop']}", "scored pairs": s["scored_pairs"], "seconds": round(s["seconds"], 2),
         "M pairs/s": round(s["scored_pairs"] / max(s["seconds"], 1e-9) / 1e6, 2),
         "peak RSS MB": s.get("peak_rss_mb", 0.0), "device": s.get("device", "")} for s in shards
    ])
    # user_splits' blocking count check reads the share from here: labels.npz does not carry it
    liked_share = next((float(s["liked_share"]) for s in shards if "liked_share" in s), LIKED_SHARE)
    yield dg.Output(
        {"path": str(path)},
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "liked_share": liked_share,
            "users": summary["users"],
            "users_with_liked": summary["users_with_liked"],
            "liked_pairs": summary["liked_pairs"],
            "hard_pool_entries": summary["hard_pool_entries"],
            "scored_pairs": scored_pairs,
            "scored_pairs_per_user_median": summary["n_scored_median"],
            "ownership_candidates_per_playlist": summary["ownership_k"],
            "shard_compute_seconds": round(compute_seconds, 3),
            "pairs_per_second": round(scored_pairs / max(compute_seconds, 1e-9)),
            "shards": dg.MetadataValue.md(table),
            "peak_rss_mb_shard_max": max((s.get("peak_rss_mb", 0.0) for s in shards), default=0.0),
            "peak_rss_mb_merge": peak_rss_mb(),
        },
    )


@dg.graph_asset(
    name="liked_playlists",
    group_name=LABEL,
    automation_condition=EAGER_WHEN_CHECKS_PASS,
    kinds={"scipy", "numpy"},
    ins={
        "exploration_coefficients": dg.AssetIn(dagster_type=dg.Nothing),
        "playlist_song_matrix": dg.AssetIn(dagster_type=dg.Nothing),
        "user_song_matrix": dg.AssetIn(dagster_type=dg.Nothing),
    },
)
def liked_playlists(exploration_coefficients, playlist_song_matrix, user_song_matrix):
    """Per user: the liked playlists (top max(1, ceil(0.015·n)) by score, ties to the lower
    playlist id), their scores, n scored playlists, and the hard-negative pool (top 20% of
    the rest). Computed fused and blocked; all scored pairs are never materialized."""
    shards = plan_label_shards(start_after=[exploration_coefficients, playlist_song_matrix, user_song_matrix])
    return merge_label_shards(shards.map(label_shard).collect())


def static_liked_playlists(shards: int) -> dg.AssetsDefinition:
    """``liked_playlists`` with a fixed number of shard steps, for executors that cannot run
    dynamic outputs (Dagster's Dask executor, see ``deploy/dask``).

    dagster-dask 0.29 plans every step before the run and never resolves ``DynamicOut``:
    with the dynamic graph above it silently skips the mapped shard steps and still reports
    success. Its fan-in inputs (lists of upstream outputs) are read from the event log as
    results reach the driver, so a merge may start with an empty list. Here the plan op has
    one named output per shard (``config.shards`` is ignored: the graph fixes the count), the
    users are cut exactly as :func:`shard_plans` cuts them for the dynamic graph (so shard
    artifacts and ``labels.npz`` are identical), surplus slots carry empty ranges that the
    shard step skips, and the merge op has one named input per shard.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    names = [f"shard_{i}" for i in range(shards)]

    @dg.op(name="plan_static_label_shards", ins={"start_after": dg.In(dg.Nothing)},
           out={name: dg.Out(dict, io_manager_key="json_io_manager") for name in names})
    def plan_static(context: dg.OpExecutionContext, config: LabelConfig, artifacts: ArtifactStore,
                    settings: PipelineSettings):
        if config.shards != shards:
            context.log.warning(f"config shards={config.shards} ignored: this graph has {shards} shard steps")
        n_users = _n_users(artifacts)
        plans = shard_plans(n_users, config, settings.seed, shards)
        plans += [{"start": n_users, "stop": n_users, "empty": True}] * (shards - len(plans))
        return tuple(plans) if shards > 1 else plans[0]

    @dg.op(name="merge_static_label_shards", ins={name: dg.In(dict) for name in names},
           out=dg.Out(dict, io_manager_key="json_io_manager"))
    def merge_static(context: dg.OpExecutionContext, artifacts: ArtifactStore, **results: dict):
        yield from _merge_shards(list(results.values()), artifacts)

    @dg.graph_asset(
        name="liked_playlists",
        group_name=LABEL,
        automation_condition=EAGER_WHEN_CHECKS_PASS,
        kinds={"scipy", "numpy"},
        description=liked_playlists.descriptions_by_key[dg.AssetKey("liked_playlists")],
        ins={
            "exploration_coefficients": dg.AssetIn(dagster_type=dg.Nothing),
            "playlist_song_matrix": dg.AssetIn(dagster_type=dg.Nothing),
            "user_song_matrix": dg.AssetIn(dagster_type=dg.Nothing),
        },
    )
    def _liked(exploration_coefficients, playlist_song_matrix, user_song_matrix):
        planned = plan_static(start_after=[exploration_coefficients, playlist_song_matrix, user_song_matrix])
        planned = planned if shards > 1 else (planned,)
        labelled = {name: label_shard.alias(f"label_shard_{i}")(plan) for i, (name, plan) in enumerate(zip(names, planned))}
        return merge_static(**labelled)

    return _liked
