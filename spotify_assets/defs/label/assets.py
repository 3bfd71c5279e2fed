"""Exploration coefficients and the fused, blocked labeler (liked playlists + hard pools).

``liked_playlists`` fans out over user shards (Dagster dynamic outputs): each shard is its
own step, so shards run in parallel on the multiprocess executor or on a Dask/Kubernetes
cluster, and each step processes its shard block by block (memory bounded by
``block_size``). A merge step concatenates the shards in user order.
"""

import time

import dagster as dg

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
import numpy as np

from spotify_assets.labeling import (
    LabelBlock,
    TorchLabeler,
    block_ranges,
    concat_blocks,
    exploration_coefficients,
    label_block,
    resolve_device,
)
from spotify_assets.matrices import load_csr
from spotify_assets.metadata import markdown_table, peak_rss_mb
from spotify_assets.resources import ArtifactStore, PipelineSettings

LABEL = "label"
USER_SONG = ("prepare", "user_song.npz")
PLAYLIST_SONG = ("prepare", "playlist_song.npz")
EXPLORATION = ("label", "exploration.npz")
LABELS = ("label", "labels.npz")


@dg.asset(name="exploration_coefficients", group_name=LABEL, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"}, deps=["user_song_matrix"])
def exploration_coefficients_artifact(
    context: dg.AssetExecutionContext, artifacts: ArtifactStore, settings: PipelineSettings
) -> dg.MaterializeResult:
    """e(u) ~ Beta(1.3, 3.3) per user, drawn once in user-id order from the configured seed."""
    n_users = load_csr(artifacts.path(*USER_SONG)).shape[0]
    e = exploration_coefficients(n_users, settings.seed)
    path = artifacts.save_arrays(*EXPLORATION, e=e)
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

    shards: int = 2
    """Steps to fan out to (one per core locally; more on a cluster)."""
    block_size: int = 512
    """Users per overlap block inside a step. Peak memory grows linearly with it; at bench
    scale 512 was also the fastest measured (smaller blocks stay in cache)."""
    liked_share: float = 0.015
    """A user likes the top max(1, ceil(liked_share * n)) of their n scored playlists."""
    hard_share: float = 0.2
    """Hard-negative pool: this share of the remaining scored playlists, by score."""
    device: str = "auto"
    """'auto' uses torch kernels on the GPU when one exists, else the scipy CPU kernel;
    'scipy', 'cuda' or 'cpu' (torch on the CPU) force one."""


@dg.op(
    ins={"start_after": dg.In(dg.Nothing)},
    out=dg.DynamicOut(list, io_manager_key="json_io_manager"),
)
def plan_label_shards(context: dg.OpExecutionContext, config: LabelConfig, artifacts: ArtifactStore):
    """Cut the users into ``shards`` contiguous ranges, one step each."""
    if config.shards < 1 or config.block_size < 1:
        raise dg.Failure("shards and block_size must be >= 1")
    n_users = load_csr(artifacts.path(*USER_SONG)).shape[0]
    size = max(1, -(-n_users // config.shards))
    for start, stop in block_ranges(n_users, size):
        yield dg.DynamicOutput([start, stop, config.block_size, config.liked_share, config.hard_share, config.device],
                               mapping_key=f"users_{start}_{stop}")


@dg.op(out=dg.Out(dict, io_manager_key="json_io_manager"))
def label_shard(context: dg.OpExecutionContext, shard: list, artifacts: ArtifactStore) -> dict:
    """Score and label one user range block by block; write its arrays; return their path."""
    start, stop, block_size, liked_share, hard_share, device = shard
    device = resolve_device(device)
    started = time.perf_counter()
    user_song = load_csr(artifacts.path(*USER_SONG))
    playlist_song = load_csr(artifacts.path(*PLAYLIST_SONG))
    e = artifacts.load_arrays(*EXPLORATION)["e"]
    if e.shape[0] != user_song.shape[0]:
        raise dg.Failure("exploration_coefficients is stale: its user count differs from user_song_matrix")
    s = np.diff(user_song.indptr).astype(np.float64)
    p = np.diff(playlist_song.indptr).astype(np.float64)
    playlist_song_t = playlist_song.T.tocsr()
    torch_labeler = None if device == "scipy" else TorchLabeler(user_song, playlist_song, s, p, e, device)
    blocks: list[LabelBlock] = []
    scored = 0
    ranges = [(a + start, b + start) for a, b in block_ranges(stop - start, int(block_size))]
    for index, (lo, hi) in enumerate(ranges, start=1):
        if torch_labeler is not None:
            blocks.append(torch_labeler.block(lo, hi, liked_share, hard_share))
        else:
            blocks.append(label_block(user_song, playlist_song_t, s, p, e, lo, hi, liked_share, hard_share))
        scored += blocks[-1].scored_pairs
        if index % 10 == 0 or index == len(ranges):
            elapsed = time.perf_counter() - started
            context.log.info(f"users {start}-{stop}: block {index}/{len(ranges)}, {scored:,} pairs scored, "
                             f"{scored / max(elapsed, 1e-9) / 1e6:.1f}M pairs/s")
    merged = concat_blocks(blocks, seconds=time.perf_counter() - started)
    path = artifacts.save_arrays("label", "shards", f"{start:09d}-{stop:09d}.npz", **merged.arrays())
    return {"start": start, "stop": stop, "path": str(path), "scored_pairs": scored, "seconds": merged.seconds,
            "device": device,
            "peak_rss_mb": peak_rss_mb()}


@dg.op(out=dg.Out(dict, io_manager_key="json_io_manager"))
def merge_label_shards(context: dg.OpExecutionContext, shards: list, artifacts: ArtifactStore):
    """Concatenate shard results in user order into ``label/labels.npz``."""
    shards = sorted(shards, key=lambda shard: shard["start"])
    blocks = []
    for shard in shards:
        with np.load(shard["path"], allow_pickle=False) as data:
            blocks.append(LabelBlock(start=shard["start"], stop=shard["stop"], n_scored=data["n_scored"],
                                     liked_indptr=data["liked_indptr"], liked_playlists=data["liked_playlists"],
                                     liked_scores=data["liked_scores"], hard_indptr=data["hard_indptr"],
                                     hard_playlists=data["hard_playlists"], scored_pairs=shard["scored_pairs"]))
    labels = concat_blocks(blocks)
    path = artifacts.save_arrays(*LABELS, **labels.arrays())
    compute_seconds = sum(shard["seconds"] for shard in shards)
    n_liked = np.diff(labels.liked_indptr)
    table = markdown_table([
        {"shard": f"{s['start']}-{s['stop']}", "scored pairs": s["scored_pairs"], "seconds": round(s["seconds"], 2),
         "M pairs/s": round(s["scored_pairs"] / max(s["seconds"], 1e-9) / 1e6, 2),
         "peak RSS MB": s.get("peak_rss_mb", 0.0), "device": s.get("device", "")} for s in shards
    ])
    yield dg.Output(
        {"path": str(path)},
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "users": labels.n_users,
            "users_with_liked": int((n_liked > 0).sum()),
            "liked_pairs": int(labels.liked_playlists.size),
            "hard_pool_entries": int(labels.hard_playlists.size),
            "scored_pairs": labels.scored_pairs,
            "scored_pairs_per_user_median": float(np.median(labels.n_scored)) if labels.n_users else 0.0,
            "shard_compute_seconds": round(compute_seconds, 3),
            "pairs_per_second": round(labels.scored_pairs / max(compute_seconds, 1e-9)),
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
