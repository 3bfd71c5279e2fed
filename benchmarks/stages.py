"""Benchmark stages: the project's kernels ("ours"), the original naive methods and library
peers, each measured on the same generated data (no Dagster imports at run time).

A stage method is a function ``(ctx: StageContext) -> Measurement``. The harness runs every
method in its own subprocess (``python -m benchmarks _child``), so its peak RSS is its own.
Stages hand arrays to later stages through files in ``ctx.work``:

=============  ===========================================================  ==========================
stage          ours                                                         writes
=============  ===========================================================  ==========================
ingest         ``ingest.load_mpd_slices`` (reader processes), ENTP, MSD       warehouse.duckdb
match          SQL models, ``catalog.build_song_catalog``,                  user_song.npz,
               ``matrices.load_interactions``                               playlist_song.npz
label          ``labeling.label_users`` (overlap -> score -> liked, blocked)  labels.npz, exploration.npz
splits         ``splits.split_users`` + ``splits.assign_ownership``          splits.npz
triplets       ``splits.sample_triplets``                                     triplets.npz
eval_batches   ``splits.sample_eval_batches`` (val and test)                  eval.npz
bpr            ``models.bpr.train_bpr``, fixed number of triplets, 1 epoch    bpr.pt, bpr_embeddings.npz
knn            ``models.knn.top_k_neighbors`` (exact top-100 cosine)          knn.npz
ann            Annoy over BPR-sized embeddings vs exact search vs hnswlib      ann_truth.npz
als            ``models.baselines.train_als`` (implicit ALS)                  -
=============  ===========================================================  ==========================

Rates are ``units / seconds`` in each stage's unit (track rows, scored pairs, triplets,
negatives, queries...); ``seconds`` is the kernel's wall time, without interpreter start
and artifact loading (the harness records those separately as ``wall_seconds``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from spotify_assets.atomic import atomic_write

# --------------------------------------------------------------------------------------
# plumbing
# --------------------------------------------------------------------------------------


@dataclass
class StageContext:
    """What a stage method gets: the data (``raw``), the stage hand-off folder (``work``),
    the scale and seed, the naive time budget in seconds and the option overrides."""

    stage: str
    method: str
    scale: str
    seed: int
    raw: Path
    work: Path
    budget_s: float
    options: dict = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[bench {self.stage}/{self.method}] {message}", file=sys.stderr, flush=True)

    def option(self, name: str):
        """An option value: the override if given, else the per-scale default."""
        if self.options.get(name) is not None:
            return self.options[name]
        return DEFAULT_OPTIONS[name].get(self.scale, DEFAULT_OPTIONS[name]["default"])

    def duckdb(self):
        """The stage's DuckDB warehouse connection, with the ``duckdb_memory_limit`` option
        applied (spilling to ``work/duckdb_tmp``)."""
        import duckdb

        con = duckdb.connect(str(self.work / "warehouse.duckdb"))
        limit = str(self.option("duckdb_memory_limit") or "")
        if limit:
            con.execute("SET memory_limit = ?", [limit])
            con.execute("SET temp_directory = ?", [str(self.work / "duckdb_tmp")])
        return con


#: Per-scale defaults of the stage options (``--bpr-triplets`` etc. override them).
DEFAULT_OPTIONS: dict[str, dict] = {
    "bpr_triplets": {"tiny": 200_000, "sample": 1_000_000, "default": 4_000_000},
    "bpr_dim": {"default": 128},
    "bpr_batch_size": {"default": 2048},
    # BPRConfig.compile: "auto"/"on" run the CPU update in the C kernel built for this CPU (the
    # pipeline's default); "off" measures the eager torch step
    "bpr_compile": {"default": "auto"},
    "label_block_size": {"default": 512},
    # per-user cap on hard-negative candidates (0 = the exact top-20% pool). At full scale the
    # exact pool is ~4,400 playlists per user (~18 GB of int32 for 1M users); the cap keeps a
    # seeded uniform subset, as the label asset's max_hard_candidates does.
    "label_max_hard": {"full": 256, "default": 0},
    # DuckDB memory_limit for ingest and match (spills to work/duckdb_tmp beyond it); "" = DuckDB's default
    "duckdb_memory_limit": {"full": "8GB", "default": ""},
    "ingest_threads": {"default": 0},  # MPD reader processes (load_mpd_slices workers); 0 = one per core
    # user shards labelled in parallel processes, as the pipeline's label_shard steps run
    "label_shards": {"tiny": 1, "default": 2},
    "knn_k": {"default": 100},
    "ann_queries": {"tiny": 200, "default": 1000},
    "ann_embeddings": {"default": "clustered"},
    "ann_trees": {"default": 50},
    "als_factors": {"default": 64},
    "als_iterations": {"default": 15},
    "device": {"default": "auto"},
    "threads": {"default": 0},
}


@dataclass
class Measurement:
    """One measured method of one stage (a row of the results table).

    input_rows / output_rows : what the stage read and wrote, in ``unit`` for the input;
    seconds : kernel wall time for the *whole* input (extrapolated when
    ``extrapolated_from`` is set: then only that many units were run and timed);
    rows_per_s : measured rate in ``unit`` per second; metrics : stage-specific numbers;
    processes : processes that ran the kernel at once (forked label shards count, an idle
    parent does not); threads : the most threads each of them ran with (DuckDB's
    ``threads``, torch's or implicit's thread count, a loader pool, BLAS; 1 for plain
    numpy/scipy/Python); threads_detail : which library's threads those are;
    cpu : the CPU model and vector flags of the machine it ran on (``harness.cpu_model()``,
    filled in by the child process).
    """

    stage: str
    method: str
    kind: str  # "ours" | "naive" | "peer"
    description: str
    unit: str
    input_rows: int
    output_rows: int
    seconds: float
    rows_per_s: float
    device: str = "cpu"
    extrapolated_from: int | None = None
    metrics: dict = field(default_factory=dict)
    processes: int | None = None
    threads: int | None = None
    threads_detail: str = ""
    cpu: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _timer() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


def _rate(units: float, seconds: float) -> float:
    return float(units) / max(seconds, 1e-9)


def _extrapolated(ctx: StageContext, description: str, unit: str, total_units: int, run, device: str = "cpu",
                  metrics: dict | None = None, kind: str = "naive", processes: int = 1, threads: int = 1,
                  threads_detail: str = "one Python thread") -> Measurement:
    """A budgeted (naive or peer) measurement over the same input as this run's ours row
    (its input and output rows): the measured rate in ``unit``/s, and the seconds for
    ``total_units`` at that rate (the measured seconds when the run finished the whole input)."""
    ours = _ours_result(ctx)
    rate = _rate(run.units, run.seconds)
    seconds = run.seconds if run.complete else total_units / max(rate, 1e-12)
    return Measurement(ctx.stage, ctx.method, kind, description, unit, int(ours["input_rows"]),
                       int(ours["output_rows"]), float(seconds), rate, device,
                       None if run.complete else int(run.units),
                       {"timed_seconds": round(run.seconds, 3), "items_done": run.items, "total_units": int(total_units),
                        **(metrics or {})},
                       processes=int(processes), threads=int(threads), threads_detail=threads_detail)


def _save(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path, *names: str) -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the stage that writes it first")
    with np.load(path, allow_pickle=False) as data:  # only ``names`` when given: members load lazily
        return {name: data[name] for name in (names or data.files)}


def _load_csr(path: Path) -> sp.csr_matrix:
    from spotify_assets.prepare.matrices import load_csr

    return load_csr(path)


def _seeded_order(n: int, seed: int, stream: int) -> np.ndarray:
    """A seeded permutation of range(n) (int64): naive runs walk a representative sample."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0xBE4C, stream])).permutation(n).astype(np.int64)


def _threads(ctx: StageContext) -> int:
    """Threads for torch, implicit and the naive torch loop: the ``--threads`` option, or
    0 = each library's default (all cores)."""
    return int(ctx.option("threads"))


def _set_torch_threads(ctx: StageContext) -> None:
    import torch

    if _threads(ctx) > 0:
        torch.set_num_threads(_threads(ctx))


def _duckdb_threads(con) -> int:
    """DuckDB's ``threads`` setting of connection ``con`` (its pool size for one query)."""
    return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])


def _blas_threads() -> int:
    """The largest thread count of the BLAS libraries numpy loaded (1 when none reports)."""
    from threadpoolctl import threadpool_info

    return max([int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "blas"] or [1])


def _torch_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    return requested


# --------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------


def _msd_file(raw: Path, *names: str) -> Path | None:
    for name in names:
        for candidate in (raw / "msd" / name, raw / "msd" / f"{name}.gz"):
            if candidate.exists():
                return candidate
    return None


def _entp_file(raw: Path) -> Path:
    plain = raw / "entp" / "train_triplets.txt"
    return plain if plain.exists() else plain.with_name(plain.name + ".gz")


def ingest_ours(ctx: StageContext) -> Measurement:
    """Every MPD slice with ``load_mpd_slices`` (worker processes parse and validate, this
    process writes one transaction per slice), then ENTP and MSD, into a fresh
    ``warehouse.duckdb``."""
    from spotify_assets.ingest import (default_mpd_workers, list_mpd_slices, load_entp_triplets, load_mpd_slices,
                                       load_msd_songs)

    database = ctx.work / "warehouse.duckdb"
    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)
    slices = list_mpd_slices(ctx.raw / "mpd")
    if not slices:
        raise FileNotFoundError(f"no MPD slices in {ctx.raw / 'mpd'}")
    con = ctx.duckdb()
    try:
        clock = _timer()
        tracks = playlists = mpd_bytes = 0
        last = 0.0
        done = [0]

        def progress(index: int, result) -> None:
            nonlocal tracks, playlists, mpd_bytes, last
            if isinstance(result, Exception):
                raise result
            done[0] += 1
            tracks += result.rows["mpd_playlist_tracks"]
            playlists += result.rows["mpd_playlists"]
            mpd_bytes += result.input_bytes
            if clock() - last > 10 or done[0] == len(slices):
                last = clock()
                ctx.log(f"{done[0]}/{len(slices)} slices, {tracks:,} track rows, {mpd_bytes / 1e6 / last:.0f} MB/s")

        # as the ingest asset does: one parsing process per core, this process the writer
        # (load_mpd_slices starts no more readers than slices, and none for one)
        workers = min(int(ctx.option("ingest_threads")) or default_mpd_workers(), len(slices))
        duckdb_threads = _duckdb_threads(con)
        parsers: dict[str, int] = {}
        read_ms = write_ms = 0

        def on_done(index: int, result) -> None:
            nonlocal read_ms, write_ms
            progress(index, result)
            parsers[result.notes["parser"]] = parsers.get(result.notes["parser"], 0) + 1
            read_ms += int(result.notes["read_ms"])
            write_ms += int(result.notes["write_ms"])

        load = sample_load_average()
        cpu_before = _cpu_seconds()
        # the load ends with one CHECKPOINT (load_mpd_slices), timed here with the rest
        loaded, rejected = load_mpd_slices(con, [(p, p.name) for p in slices], workers=workers, on_done=on_done)
        if rejected:
            raise rejected[0]
        mpd_seconds = clock()
        # user + system CPU of this process and its (finished) reader processes: on a machine
        # shared with other work the wall-clock rate drops, the CPU per MB much less
        mpd_cpu_seconds = _cpu_seconds() - cpu_before
        load_average = load()
        entp = load_entp_triplets(con, _entp_file(ctx.raw))
        msd = load_msd_songs(con, unique_tracks=_msd_file(ctx.raw, "unique_tracks.txt"),
                             song_data=_msd_file(ctx.raw, "song_data.csv"),
                             sid_mismatches=_msd_file(ctx.raw, "sid_mismatches.txt", "mismatches.txt"))
        total_seconds = clock()
    finally:
        con.close()
    return Measurement(
        ctx.stage, "ours", "ours",
        f"orjson + Arrow checks per slice in {workers} worker processes (DuckDB reader where unsure), "
        "one writer, one transaction per slice",
        "MPD track rows", tracks, tracks + playlists, mpd_seconds, _rate(tracks, mpd_seconds), "cpu",
        metrics={"mpd_bytes": mpd_bytes, "mpd_mb_per_s": round(mpd_bytes / 1e6 / max(mpd_seconds, 1e-9), 2),
                 "slices": len(slices), "playlists": playlists, "workers": workers,
                 "slices_by_parser": parsers, "read_ms_per_slice": round(read_ms / max(len(loaded), 1)),
                 "write_ms_per_slice": round(write_ms / max(len(loaded), 1)),
                 "load_average_1m": load_average, "mpd_cpu_seconds": round(mpd_cpu_seconds, 2),
                 # CPU seconds other processes used meanwhile, out of cpus x wall
                 "others_cpu_share": round(max(0.0, load_average["machine_busy_share"] - mpd_cpu_seconds / max(
                     mpd_seconds * (os.cpu_count() or 1), 1e-9)), 3),
                 "mpd_mb_per_cpu_s": round(mpd_bytes / 1e6 / max(mpd_cpu_seconds, 1e-9), 2),
                 "entp_rows": entp.rows["entp_listens"], "entp_seconds": round(entp.seconds, 3),
                 "entp_mb_per_s": round(entp.mb_per_s, 2),
                 "msd_rows": msd.rows["msd_songs"], "msd_seconds": round(msd.seconds, 3),
                 "all_inputs_seconds": round(total_seconds, 3), "duckdb_threads": duckdb_threads},
        processes=workers + 1 if workers > 1 else 1, threads=max(1, duckdb_threads),
        threads_detail=f"{workers} reader processes (one thread each) + 1 writer process (DuckDB threads=1 "
                       f"while readers run, {duckdb_threads} for the final "
                       "checkpoint)" if workers > 1 else f"1 process reading and writing (DuckDB threads={duckdb_threads})",
    )


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal)
    since boot, from /proc/stat; 0.0 where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def sample_load_average(interval_s: float = 1.0) -> Callable[[], dict]:
    """Start sampling the 1-minute load average every ``interval_s`` in a daemon thread;
    the returned function stops it and gives {min, median, max} over the samples (what else
    was running on the machine while a stage was timed)."""
    import statistics
    import threading

    samples: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()
    busy_before, clock = _machine_busy_seconds(), time.perf_counter()

    def sample() -> None:
        while not stop.wait(interval_s):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def finish() -> dict:
        stop.set()
        thread.join()
        busy, wall = _machine_busy_seconds() - busy_before, time.perf_counter() - clock
        return {"min": round(min(samples), 2), "median": round(statistics.median(samples), 2),
                "max": round(max(samples), 2), "cpus": os.cpu_count(),
                # every process's CPU seconds (and the hypervisor's steal) over cpus x wall
                "machine_busy_share": round(busy / max(wall * (os.cpu_count() or 1), 1e-9), 3)}

    return finish


def ingest_naive(ctx: StageContext) -> Measurement:
    """``json.load`` + ``pandas.json_normalize`` per slice, frames inserted into DuckDB."""
    from benchmarks.naive import ingest_pandas
    from spotify_assets.ingest import list_mpd_slices

    slices = list_mpd_slices(ctx.raw / "mpd")
    ours = _ours_result(ctx)
    run = ingest_pandas(slices, ctx.work / "naive_ingest.duckdb", ctx.budget_s)
    total_bytes = sum(p.stat().st_size for p in slices)
    mb_per_s = run.extra["bytes"] / 1e6 / max(run.seconds, 1e-9)
    return _extrapolated(ctx, "json.load + pandas.json_normalize per slice, DataFrame inserted into DuckDB",
                         "MPD track rows", ours["input_rows"], run,
                         metrics={"mpd_mb_per_s": round(mb_per_s, 2), "mpd_bytes": total_bytes,
                                  "slices_done": run.items, "duckdb_threads": run.extra["duckdb_threads"]},
                         threads=max(1, run.extra["duckdb_threads"]),
                         threads_detail=f"json.load + pandas on one thread; DataFrame inserts on DuckDB threads="
                                        f"{run.extra['duckdb_threads']}")


# --------------------------------------------------------------------------------------
# match: SQL models + song catalog + matrices
# --------------------------------------------------------------------------------------


def _ordered_models():
    """The dbt_like_sql models in dependency order (a model after the models it reads)."""
    from spotify_assets.sql.models import discover_models

    models = {m.name: m for m in discover_models()}
    ordered, placed = [], set()
    while len(ordered) < len(models):
        ready = [m for name, m in models.items()
                 if name not in placed and all(u in placed or u not in models for u in m.upstream)]
        if not ready:
            raise ValueError("the SQL models have a dependency cycle")
        for model in sorted(ready, key=lambda m: m.name):
            ordered.append(model)
            placed.add(model.name)
    return ordered


def match_ours(ctx: StageContext) -> Measurement:
    """Staging/mart SQL models, canonical song keys on both sides, then the binary CSR
    user-song and playlist-song matrices over matched songs."""
    from spotify_assets.prepare.catalog import build_song_catalog
    from spotify_assets.prepare.matrices import load_interactions, save_csr
    from spotify_assets.defs.metadata import replace_tables
    from spotify_assets.sql.models import materialize_model

    con = ctx.duckdb()
    try:
        duckdb_threads = _duckdb_threads(con)
        listens = con.execute("SELECT count(*) FROM entp_listens").fetchall()[0][0]
        track_rows = con.execute("SELECT count(*) FROM mpd_playlist_tracks").fetchall()[0][0]
        clock = _timer()
        for model in _ordered_models():
            materialize_model(con, model)
        sql_seconds = clock()
        ctx.log(f"SQL models in {sql_seconds:.1f}s")
        songs = con.execute("SELECT song_id, title, artist_name, mismatched FROM stg_songs ORDER BY song_id").fetchnumpy()
        tracks = con.execute("SELECT track_id, track_uri, track_name, artist_name FROM track_dictionary "
                             "ORDER BY track_id").fetchnumpy()
        catalog = build_song_catalog(
            songs["song_id"].tolist(), songs["title"].tolist(), songs["artist_name"].tolist(),
            songs["mismatched"].tolist(), tracks["track_id"], tracks["track_uri"].tolist(),
            tracks["track_name"].tolist(), tracks["artist_name"].tolist())
        replace_tables(con, {"msd_song_keys": catalog.msd, "mpd_track_keys": catalog.mpd,
                             "song_catalog": catalog.catalog})
        catalog_seconds = clock() - sql_seconds
        ctx.log(f"song catalog ({catalog.catalog.num_rows:,} keys) in {catalog_seconds:.1f}s")
        data = load_interactions(con, seed=ctx.seed)
        seconds = clock()
    finally:
        con.close()
    save_csr(ctx.work / "user_song.npz", data.user_song)
    save_csr(ctx.work / "playlist_song.npz", data.playlist_song)
    units = int(listens + track_rows)
    return Measurement(
        ctx.stage, "ours", "ours", "SQL models + canonical song keys + binary CSR matrices",
        "listen + track rows", units, int(data.user_song.nnz + data.playlist_song.nnz), seconds,
        _rate(units, seconds), "cpu",
        metrics={"sql_seconds": round(sql_seconds, 3), "catalog_seconds": round(catalog_seconds, 3),
                 "matrices_seconds": round(seconds - sql_seconds - catalog_seconds, 3),
                 "users": int(data.user_song.shape[0]), "playlists": int(data.playlist_song.shape[0]),
                 "songs": int(data.user_song.shape[1]), "song_keys": int(catalog.catalog.num_rows),
                 "duckdb_threads": duckdb_threads},
        processes=1, threads=duckdb_threads,
        threads_detail=f"DuckDB threads={duckdb_threads} for the SQL models and matrix queries; catalogue in Python",
    )


# --------------------------------------------------------------------------------------
# label
# --------------------------------------------------------------------------------------


def label_ours(ctx: StageContext) -> Measurement:
    """The fused, blocked labeler over all users (ownership candidates included)."""
    from spotify_assets.label.driver import label_users
    from spotify_assets.label.scores import exploration_coefficients
    from spotify_assets.label.torch_kernel import resolve_device

    user_song = _load_csr(ctx.work / "user_song.npz")
    playlist_song = _load_csr(ctx.work / "playlist_song.npz")
    e = exploration_coefficients(user_song.shape[0], ctx.seed)
    device = resolve_device(ctx.option("device"))
    last = [0.0]
    clock = _timer()

    def progress(done: int, total: int, scored: int) -> None:
        if clock() - last[0] > 10 or done == total:
            last[0] = clock()
            ctx.log(f"{done:,}/{total:,} users, {scored:,} pairs, {scored / max(last[0], 1e-9) / 1e6:.1f}M pairs/s")

    shards = int(ctx.option("label_shards"))
    max_hard = int(ctx.option("label_max_hard")) or None
    sharded = shards > 1 and device != "cuda"
    if sharded:
        # the pipeline's fan-out: one process per user shard writing its file, then the
        # streaming merge of the files (merge_label_files), as merge_label_shards does
        scored_pairs, summary = _label_in_shards(user_song, playlist_song, e, int(ctx.option("label_block_size")),
                                                 device, ctx.seed, shards, ctx.work, max_hard, progress)
        merge_seconds = clock() - summary.pop("compute_seconds")
    else:
        labels = label_users(user_song, playlist_song, e, block_size=int(ctx.option("label_block_size")),
                             progress=progress, device=device, seed=ctx.seed, max_hard_candidates=max_hard)
        _save(ctx.work / "labels.npz", **labels.arrays(include_optional=True))
        scored_pairs, merge_seconds = int(labels.scored_pairs), 0.0
        summary = {"users": labels.n_users, "liked_pairs": int(labels.liked_playlists.size),
                   "hard_pool_entries": int(labels.hard_playlists.size)}
    seconds = clock()
    _save(ctx.work / "exploration.npz", e=e)
    return Measurement(
        ctx.stage, "ours", "ours", "fused blocked sparse overlap -> score -> bucketed top-k selection",
        "scored pairs", scored_pairs, summary["liked_pairs"], seconds, _rate(scored_pairs, seconds),
        "cuda" if device == "cuda" else "cpu",
        metrics={"users": summary["users"], "playlists": int(playlist_song.shape[0]),
                 "hard_pool_entries": summary["hard_pool_entries"], "kernel": device,
                 "max_hard_candidates": max_hard or 0, "merge_seconds": round(merge_seconds, 3),
                 "shards": int(ctx.option("label_shards"))},
        **_label_parallelism(device, shards if sharded else 1),
    )


def _label_parallelism(device: str, processes: int) -> dict:
    """processes / threads / threads_detail of label_ours: the CPU kernel (scipy + numpy)
    runs one thread per process; the torch kernels run torch's intra-op threads."""
    if device == "scipy":
        threads, detail = 1, "scipy/numpy kernel, one thread per process"
    else:
        import torch

        threads, detail = torch.get_num_threads(), f"torch kernel on {device}, torch threads"
    if processes > 1:
        detail += f"; {processes} forked shard processes, then the merge in the parent"
    return {"processes": processes, "threads": threads, "threads_detail": detail}


_SHARD_INPUTS: dict = {}


def _label_shard(bounds: tuple[int, int]) -> tuple[int, str]:
    """One shard in a forked process: label its users, write its file; (scored pairs, file)."""
    from spotify_assets.label.driver import label_users

    i = _SHARD_INPUTS
    labels = label_users(i["user_song"], i["playlist_song"], i["e"], block_size=i["block_size"], device=i["device"],
                         seed=i["seed"], start=bounds[0], stop=bounds[1], max_hard_candidates=i["max_hard"],
                         progress=i["progress"])
    path = i["folder"] / f"{bounds[0]:09d}-{bounds[1]:09d}.npz"
    _save(path, **labels.arrays(include_optional=True))
    return int(labels.scored_pairs), str(path)


def _label_in_shards(user_song, playlist_song, e, block_size: int, device: str, seed: int, shards: int, work: Path,
                     max_hard: int | None = None, progress=None) -> tuple[int, dict]:
    """label_users over ``shards`` contiguous user ranges in forked processes, each writing
    its shard file, then ``merge_label_files`` into ``work/labels.npz``; returns (scored
    pairs, the merge summary plus ``compute_seconds`` of the shard phase)."""
    import multiprocessing
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from spotify_assets.label.labels import merge_label_files

    folder = work / "label_shards"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _SHARD_INPUTS.update(user_song=user_song, playlist_song=playlist_song, e=e, block_size=block_size,
                         device=device, seed=seed, max_hard=max_hard, progress=progress, folder=folder)
    edges = np.linspace(0, user_song.shape[0], shards + 1).astype(int)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=shards, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = list(pool.map(_label_shard, list(zip(edges[:-1].tolist(), edges[1:].tolist()))))
    compute_seconds = time.perf_counter() - started
    merged = work / "labels.npz"
    with atomic_write(merged) as tmp:  # temp + rename, like _save
        summary = merge_label_files([path for _, path in parts], tmp)
    shutil.rmtree(folder)
    return sum(pairs for pairs, _ in parts), {**summary, "compute_seconds": compute_seconds}


def label_naive(ctx: StageContext) -> Measurement:
    """Per user, per overlapping playlist: one Python score, then a sort per user."""
    from benchmarks.naive import label_per_pair

    user_song = _load_csr(ctx.work / "user_song.npz")
    playlist_song = _load_csr(ctx.work / "playlist_song.npz")
    e = _load(ctx.work / "exploration.npz")["e"]
    labels = _load(ctx.work / "labels.npz", "liked_indptr", "liked_playlists", "n_scored")
    users = _seeded_order(user_song.shape[0], ctx.seed, 1)
    run = label_per_pair(user_song, playlist_song, e, users, ctx.budget_s)
    indptr, liked = labels["liked_indptr"], labels["liked_playlists"]
    agree = [np.array_equal(np.asarray(v, np.int64), liked[indptr[u]:indptr[u + 1]].astype(np.int64))
             for u, v in run.extra["liked"].items()]
    return _extrapolated(ctx, "per-user dict of overlaps, one Python score per pair, sort per user",
                         "scored pairs", int(labels["n_scored"].sum()), run,
                         metrics={"users_done": run.items,
                                  "liked_agreement": round(float(np.mean(agree)) if agree else 1.0, 4)})


def label_duckdb(ctx: StageContext) -> Measurement:
    """The labels as DuckDB SQL (``benchmarks.peers.LABEL_SQL``): join on song, count
    overlaps per (user, playlist), the kernel's score, window top ranks per user. Same
    parallelism as ours: ``label_shards`` DuckDB threads. Users in seeded order, in doubling
    chunks while the naive budget lasts, extrapolated when it stops early; checked against
    ours: liked lists (same order), exact hard pools (as sets) and scored pairs per user."""
    from benchmarks.peers import gather_rows, label_duckdb_sql, rows_equal

    user_song = _load_csr(ctx.work / "user_song.npz")
    playlist_song = _load_csr(ctx.work / "playlist_song.npz")
    e = _load(ctx.work / "exploration.npz")["e"]
    labels = _load(ctx.work / "labels.npz", "liked_indptr", "liked_playlists", "hard_indptr", "hard_playlists",
                   "n_scored")
    threads = int(_ours_result(ctx)["metrics"].get("shards", 1))
    users = _seeded_order(user_song.shape[0], ctx.seed, 5)
    run = label_duckdb_sql(user_song, playlist_song, e, users, ctx.budget_s, threads,
                           memory_limit=str(ctx.option("duckdb_memory_limit") or ""),
                           temp_directory=str(ctx.work / "duckdb_tmp"))
    sql = run.extra["labels"]
    liked_indptr, liked = gather_rows(labels["liked_indptr"], labels["liked_playlists"], sql.users)
    liked_ok = rows_equal(liked_indptr, liked.astype(np.int64), sql.liked_indptr, sql.liked_playlists.astype(np.int64))
    metrics = {"users_done": run.items, "chunks": run.extra["chunks"], "setup_seconds": run.extra["setup_seconds"],
               "duckdb_threads": run.extra["duckdb_threads"],
               "liked_agreement": round(float(liked_ok.mean()) if liked_ok.size else 1.0, 4),
               "scored_pairs_agreement": round(float((labels["n_scored"][sql.users] == sql.n_scored).mean())
                                               if sql.users.size else 1.0, 4)}
    if int(_ours_result(ctx)["metrics"].get("max_hard_candidates", 0)) == 0:  # ours kept the exact pools
        hard_indptr, hard = gather_rows(labels["hard_indptr"], labels["hard_playlists"], sql.users)
        row = np.repeat(np.arange(sql.users.size), np.diff(hard_indptr))
        hard = hard[np.lexsort((hard, row))].astype(np.int64)  # ours' order within a user is unspecified
        hard_ok = rows_equal(hard_indptr, hard, sql.hard_indptr, sql.hard_playlists.astype(np.int64))
        metrics["hard_pool_agreement"] = round(float(hard_ok.mean()) if hard_ok.size else 1.0, 4)
    return _extrapolated(ctx, "DuckDB SQL: join on song, count(*) per (user, playlist), score, row_number() top "
                              "ranks per user (liked + exact hard pool; no ownership candidates), "
                              f"{run.extra['chunks']} user chunks",
                         "scored pairs", int(labels["n_scored"].sum()), run, metrics=metrics, kind="peer",
                         threads=run.extra["duckdb_threads"],
                         threads_detail=f"DuckDB threads={run.extra['duckdb_threads']} (ours' label_shards)")


# --------------------------------------------------------------------------------------
# splits, triplets, eval batches
# --------------------------------------------------------------------------------------


def splits_ours(ctx: StageContext) -> Measurement:
    """Seeded train/val/test split per liked pair and greedy playlist ownership."""
    from spotify_assets.label.ownership import OwnershipCandidates
    from spotify_assets.split.ownership import assign_ownership
    from spotify_assets.split.users import split_users

    labels = _load(ctx.work / "labels.npz", "liked_indptr", "liked_playlists", "ownership_users",
                   "ownership_priorities")
    candidates = OwnershipCandidates.from_arrays(labels["ownership_users"], labels["ownership_priorities"])
    clock = _timer()
    result = split_users(labels["liked_indptr"], ctx.seed)
    split_seconds = clock()
    ownership = assign_ownership(candidates, labels["liked_indptr"], labels["liked_playlists"], result.split,
                                 cold=result.cold)
    seconds = clock()
    _save(ctx.work / "splits.npz", split=result.split, cold=result.cold, owner=ownership.owner)
    pairs = int(labels["liked_playlists"].size)
    return Measurement(
        ctx.stage, "ours", "ours", "vectorized seeded split + greedy ownership by deferred acceptance",
        "liked pairs", pairs, pairs + int((ownership.owner >= 0).sum()), seconds, _rate(pairs, seconds), "cpu",
        metrics={"split_seconds": round(split_seconds, 3), "ownership_seconds": round(seconds - split_seconds, 3),
                 **result.counts(), "owned_playlists": int((ownership.owner >= 0).sum()),
                 "ownership_candidates": int(candidates.pairs()[0].size)},
        processes=1, threads=1, threads_detail="numpy, one thread",
    )


def _split_inputs(ctx: StageContext) -> tuple[dict, dict]:
    return (_load(ctx.work / "labels.npz", "liked_indptr", "liked_playlists", "hard_indptr", "hard_playlists",
                  "n_scored"),
            _load(ctx.work / "splits.npz"))


def triplets_ours(ctx: StageContext) -> Measurement:
    """``sample_triplets``: 2 hard + 2 easy negatives per train positive, vectorized."""
    from spotify_assets.split.sampling import sample_triplets
    from spotify_assets.split.users import TRAIN

    labels, splits = _split_inputs(ctx)
    owner = splits["owner"]
    clock = _timer()
    sample = sample_triplets(labels["liked_indptr"], labels["liked_playlists"], splits["split"],
                             labels["hard_indptr"], labels["hard_playlists"], owner, owner.size, ctx.seed)
    seconds = clock()
    _save(ctx.work / "triplets.npz", triplets=sample.triplets)
    n = int(sample.triplets.shape[0])
    return Measurement(ctx.stage, "ours", "ours", "vectorized: one draw per slot, rejection only for clashes",
                       "triplets", int((splits["split"] == TRAIN).sum()), n, seconds, _rate(n, seconds), "cpu",
                       metrics={"hard_fallbacks": sample.n_fallback},
                       processes=1, threads=1, threads_detail="numpy, one thread")


def triplets_naive(ctx: StageContext) -> Measurement:
    """Per-user Python loop with sets and rejection sampling (``random.Random``)."""
    from benchmarks.naive import triplets_per_user
    from spotify_assets.split.users import TRAIN

    labels, splits = _split_inputs(ctx)
    owner = splits["owner"]
    users = _seeded_order(labels["n_scored"].size, ctx.seed, 2)
    run = triplets_per_user(labels["liked_indptr"], labels["liked_playlists"], splits["split"], labels["hard_indptr"],
                            labels["hard_playlists"], owner, owner.size, users, ctx.seed, ctx.budget_s)
    n_train = int((splits["split"] == TRAIN).sum())
    return _extrapolated(ctx, "per-user loop: sets, random.Random, rejection sampling per negative",
                         "triplets", 4 * n_train, run, metrics={"users_done": run.items})


def eval_ours(ctx: StageContext) -> Measurement:
    """``sample_eval_batches`` for val and test: 50 distinct negatives per positive."""
    from spotify_assets.split.sampling import sample_eval_batches
    from spotify_assets.split.users import TEST, VAL

    labels, splits = _split_inputs(ctx)
    owner = splits["owner"]
    clock = _timer()
    arrays, rows = {}, 0
    for name, which in (("val", VAL), ("test", TEST)):
        batch = sample_eval_batches(labels["liked_indptr"], labels["liked_playlists"], splits["split"], which,
                                    labels["hard_indptr"], labels["hard_playlists"], owner, splits["cold"],
                                    owner.size, ctx.seed)
        rows += batch.users.size
        arrays.update({f"{name}_users": batch.users, f"{name}_positives": batch.positives,
                       f"{name}_negatives": batch.negatives})
    seconds = clock()
    _save(ctx.work / "eval.npz", **arrays)
    negatives = rows * 50
    return Measurement(ctx.stage, "ours", "ours", "vectorized: distinct offsets per row, redraw only duplicates",
                       "negatives", rows, negatives, seconds, _rate(negatives, seconds), "cpu",
                       metrics={"rows": rows, "val_rows": int(arrays["val_users"].size)},
                       processes=1, threads=1, threads_detail="numpy, one thread")


def eval_naive(ctx: StageContext) -> Measurement:
    """Per-user, per-row Python loop (``random.sample`` + rejection), val then test."""
    from benchmarks.naive import NaiveRun, eval_rows_per_user
    from spotify_assets.split.users import TEST, VAL

    labels, splits = _split_inputs(ctx)
    owner = splits["owner"]
    users = _seeded_order(labels["n_scored"].size, ctx.seed, 3)
    units = items = 0
    seconds = 0.0
    complete = True
    for which in (VAL, TEST):
        run = eval_rows_per_user(labels["liked_indptr"], labels["liked_playlists"], splits["split"], which,
                                 labels["hard_indptr"], labels["hard_playlists"], owner, owner.size, users,
                                 ctx.seed, ctx.budget_s / 2)
        units, items, seconds, complete = units + run.units, items + run.items, seconds + run.seconds, \
            complete and run.complete
    rows = int(((splits["split"] == VAL) | (splits["split"] == TEST)).sum())
    return _extrapolated(ctx, "per-row loop: random.sample of the hard pool, rejection for easy negatives",
                         "negatives", rows * 50, NaiveRun(units, items, seconds, complete),
                         metrics={"users_done": items})


# --------------------------------------------------------------------------------------
# BPR
# --------------------------------------------------------------------------------------


def _bpr_triplets(ctx: StageContext) -> tuple[np.ndarray, int, int]:
    """A seeded subset of ``bpr_triplets`` rows (all when there are fewer), int64 (N, 3)."""
    triplets = _load(ctx.work / "triplets.npz")["triplets"]
    labels = _load(ctx.work / "labels.npz", "n_scored")
    n_users = int(labels["n_scored"].size)
    n_playlists = int(_load(ctx.work / "splits.npz")["owner"].size)
    want = int(ctx.option("bpr_triplets"))
    if triplets.shape[0] > want:
        rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0xB9B]))
        triplets = triplets[np.sort(rng.choice(triplets.shape[0], size=want, replace=False))]
    return np.ascontiguousarray(triplets, dtype=np.int64), n_users, n_playlists


def bpr_ours(ctx: StageContext) -> Measurement:
    """``train_bpr``: one epoch over the fixed triplet subset (the rate of the row), then one
    epoch each with negatives drawn per epoch ("uniform", "hard") over the train positives
    implicit trains on (metrics ``uniform_negatives_per_s``, ``hard_negatives_per_s``:
    sampling or mining included, as implicit's rate includes its own sampling)."""
    import torch

    from spotify_assets.train.bpr import BPRConfig, load_checkpoint, train_bpr
    from spotify_assets.train.native import load_bpr_kernel

    _set_torch_threads(ctx)
    triplets, n_users, n_playlists = _bpr_triplets(ctx)
    # fixed triplets, as in the original system: the throughput of the update itself
    config = BPRConfig(dim=int(ctx.option("bpr_dim")), batch_size=int(ctx.option("bpr_batch_size")), max_epochs=1,
                       seed=ctx.seed, compile=ctx.option("bpr_compile"), negatives="seed_leaky")
    ctx.log(f"{triplets.shape[0]:,} triplets, dim {config.dim}, batch {config.batch_size}, "
            f"{torch.get_num_threads()} torch threads")
    accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}.get(ctx.option("device"), "auto")
    interactions = sp.csr_matrix((np.ones(triplets.shape[0], np.float32), (triplets[:, 0], triplets[:, 1])),
                                 shape=(n_users, n_playlists))
    result = train_bpr(interactions, config, ctx.work / "bpr.pt", accelerator=accelerator, triplets=triplets)
    net = load_checkpoint(ctx.work / "bpr.pt")
    _save(ctx.work / "bpr_embeddings.npz", users=net.user_embeddings(), playlists=net.playlist_embeddings())
    n = int(triplets.shape[0])
    del interactions, triplets
    positives = _train_positives(ctx)
    per_epoch: dict[str, float] = {}
    for negatives in ("uniform", "hard"):
        run = train_bpr(positives, replace(config, negatives=negatives), ctx.work / "bpr_epoch.pt",
                        accelerator=accelerator)
        per_epoch[negatives] = float(run.triplets_per_second)
        ctx.log(f"{negatives} negatives drawn per epoch: {positives.nnz:,} triplets, "
                f"{run.triplets_per_second / 1e6:.2f}M/s")
    (ctx.work / "bpr_epoch.pt").unlink(missing_ok=True)
    kernel = load_bpr_kernel() if result.compiled_update else None
    flags = " ".join(f for f in kernel.flags if f.startswith("-march")) or "no -march" if kernel else ""
    update = f"C kernel (cc {flags})" if kernel else "eager torch step"
    return Measurement(ctx.stage, "ours", "ours",
                       f"Lightning, in-memory shuffled triplet tensor, fused SGD update in the {update}"
                       f"{' (built once per CPU, cached; loaded before training)' if kernel else ''}, "
                       f"{torch.get_num_threads()} torch threads; 1 epoch each with negatives drawn per epoch "
                       f"over the train positives: uniform "
                       f"{per_epoch['uniform'] / 1e6:.2f}M/s, hard (best of {config.hard_candidates}) "
                       f"{per_epoch['hard'] / 1e6:.2f}M/s",
                       "triplets (samples)", n, n, n / max(result.triplets_per_second, 1e-9),
                       float(result.triplets_per_second), _torch_device("auto") if result.device.startswith("cuda")
                       else "cpu",
                       metrics={"fit_seconds": round(result.train_seconds, 3), "dim": config.dim,
                                "batch_size": config.batch_size, "torch_threads": torch.get_num_threads(),
                                "compiled_update": result.compiled_update,
                                "compile_seconds": round(result.compile_seconds, 2),
                                "kernel_flags": " ".join(kernel.flags) if kernel else None,
                                "train_loss": (result.history[-1].get("train_loss") if result.history else None),
                                "uniform_negatives_per_s": round(per_epoch["uniform"]),
                                "hard_negatives_per_s": round(per_epoch["hard"]),
                                "epoch_negatives_triplets": int(positives.nnz)},
                       processes=1, threads=torch.get_num_threads(),
                       threads_detail="torch intra-op threads (the C kernel: one thread); DataLoader without "
                                      "worker processes")


def bpr_naive(ctx: StageContext) -> Measurement:
    """Per-sample ``Dataset`` + ``DataLoader`` + autograd SGD, same model, dim and batch."""
    import torch

    from benchmarks.naive import bpr_dataloader_epoch

    _set_torch_threads(ctx)
    triplets, n_users, n_playlists = _bpr_triplets(ctx)
    run = bpr_dataloader_epoch(triplets, n_users, n_playlists, int(ctx.option("bpr_dim")),
                               int(ctx.option("bpr_batch_size")), 0.05, 1e-4, ctx.seed, ctx.budget_s)
    return _extrapolated(ctx, "per-sample Dataset.__getitem__ + DataLoader(shuffle) + autograd SGD",
                         "triplets (samples)", triplets.shape[0], run,
                         metrics={"torch_threads": torch.get_num_threads()}, threads=torch.get_num_threads(),
                         threads_detail="torch intra-op threads; DataLoader without worker processes")


def _train_positives(ctx: StageContext) -> sp.csr_matrix:
    """(n_users, n_playlists) binary float32 CSR of the train positives."""
    from spotify_assets.split.users import TRAIN

    labels, splits = _split_inputs(ctx)
    n_users, n_playlists = labels["n_scored"].size, splits["owner"].size
    users = np.repeat(np.arange(n_users), np.diff(labels["liked_indptr"]))
    train = splits["split"] == TRAIN
    matrix = sp.csr_matrix((np.ones(int(train.sum()), np.float32),
                            (users[train], labels["liked_playlists"][train].astype(np.int64))),
                           shape=(n_users, n_playlists))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def bpr_implicit(ctx: StageContext) -> Measurement:
    """implicit's CPU BPR (Hogwild, all cores) on the same train positives, same factors,
    enough iterations for about the same number of samples."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    positives = _train_positives(ctx)
    triplets, _, _ = _bpr_triplets(ctx)
    iterations = max(1, round(triplets.shape[0] / max(positives.nnz, 1)))
    model = BayesianPersonalizedRanking(factors=int(ctx.option("bpr_dim")), learning_rate=0.05, regularization=1e-4,
                                        iterations=iterations, random_state=ctx.seed, num_threads=_threads(ctx))
    clock = _timer()
    with threadpool_limits(1, "blas"):
        model.fit(positives, show_progress=False)
    seconds = clock()
    samples = positives.nnz * iterations
    return Measurement(ctx.stage, "implicit-bpr", "peer",
                       f"implicit.cpu.bpr (Cython, Hogwild, {_threads(ctx) or os.cpu_count()} threads)",
                       "triplets (samples)", int(samples), int(samples), seconds, _rate(samples, seconds), "cpu",
                       metrics={"iterations": iterations, "interactions": int(positives.nnz),
                                "factors": int(ctx.option("bpr_dim")), "threads": _threads(ctx) or os.cpu_count()},
                       processes=1, threads=_threads(ctx) or os.cpu_count() or 1,
                       threads_detail="implicit num_threads (OpenMP), BLAS limited to 1")


# --------------------------------------------------------------------------------------
# KNN
# --------------------------------------------------------------------------------------


def knn_ours(ctx: StageContext) -> Measurement:
    """Exact top-k cosine neighbours of every user by blocked sparse products."""
    from spotify_assets.train.knn import top_k_neighbors

    user_song = _load_csr(ctx.work / "user_song.npz")
    k = int(ctx.option("knn_k"))
    clock = _timer()
    result = top_k_neighbors(user_song, k=k)
    seconds = clock()
    _save(ctx.work / "knn.npz", neighbors=result.neighbors, similarities=result.similarities)
    n = int(user_song.shape[0])
    return Measurement(ctx.stage, "ours", "ours", f"blocked sparse Gram rows (512 users), histogram pre-selection, exact top-{k}",
                       "queries (users)", n, int((result.neighbors >= 0).sum()), seconds, _rate(n, seconds), "cpu",
                       metrics={"k": k}, processes=1, threads=1, threads_detail="scipy sparse products, one thread")


def knn_naive(ctx: StageContext) -> Measurement:
    """One query at a time: a sparse row times all users, argpartition, sort."""
    from benchmarks.naive import knn_one_query_at_a_time

    user_song = _load_csr(ctx.work / "user_song.npz")
    ours = _load(ctx.work / "knn.npz")
    k = int(ctx.option("knn_k"))
    agree: list[bool] = []

    def check(u: int, neighbours: np.ndarray, sims: np.ndarray) -> None:
        expected = ours["similarities"][u][ours["neighbors"][u] >= 0]
        agree.append(expected.size == sims.size and np.allclose(expected, sims.astype(np.float32), rtol=0, atol=1e-6))

    queries = _seeded_order(user_song.shape[0], ctx.seed, 4)
    run = knn_one_query_at_a_time(user_song, queries, k, ctx.budget_s, on_result=check)
    n = int(user_song.shape[0])
    return _extrapolated(ctx, "one query at a time: sparse row x all users, argpartition",
                         "queries (users)", n, run,
                         metrics={"similarity_agreement": round(float(np.mean(agree)) if agree else 1.0, 4)})


def knn_sklearn(ctx: StageContext) -> Measurement:
    """scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")`` on the user-song
    rows, the same k as ours, one thread; queries in seeded order, in doubling chunks while
    the naive budget lasts, extrapolated when it stops early; checked against ours."""
    from benchmarks.peers import knn_agreement, knn_sklearn_brute

    user_song = _load_csr(ctx.work / "user_song.npz")
    ours = _load(ctx.work / "knn.npz")
    k = int(ctx.option("knn_k"))
    queries = _seeded_order(user_song.shape[0], ctx.seed, 6)
    run = knn_sklearn_brute(user_song, queries, k, ctx.budget_s)
    done = run.extra["queries"]
    similarity_ok, neighbors_ok = knn_agreement(ours["neighbors"][done], ours["similarities"][done],
                                                run.extra["neighbors"], run.extra["similarities"])
    return _extrapolated(ctx, f"sklearn NearestNeighbors(metric='cosine', algorithm='brute', n_jobs=1), "
                              f"kneighbors(k + 1) on {run.extra['chunks']} query chunks, self dropped",
                         "queries (users)", int(user_song.shape[0]), run, kind="peer",
                         metrics={"k": k, "fit_seconds": run.extra["fit_seconds"],
                                  "similarity_agreement": round(float(similarity_ok.mean()) if done.size else 1.0, 4),
                                  "neighbor_agreement": round(float(neighbors_ok.mean()) if done.size else 1.0, 4)},
                         threads_detail="scipy sparse products, n_jobs=1, thread pools limited to 1")


# --------------------------------------------------------------------------------------
# ANN: exact vs Annoy vs hnswlib over BPR-sized embeddings
# --------------------------------------------------------------------------------------


def _ann_data(ctx: StageContext) -> tuple[np.ndarray, np.ndarray, str]:
    """(items float32 (n, d), queries float32 (q, d), source) for the ANN stage.

    ``--ann-embeddings clustered`` (default): BPR-sized seeded embeddings with structure,
    like trained ones: n = the playlists of this run (100k at bench scale; 10k when the
    match stage has not run), d = ``bpr_dim``; each point is a cluster centre (60 clusters)
    plus Gaussian spread in a 16-dimensional latent space, mapped to d dimensions by a fixed
    random projection, plus a little full-rank noise. Queries come from the same
    distribution. ``--ann-embeddings bpr``: the playlist embeddings written by the bpr stage
    (after its single epoch they are still close to their random initialisation: the hard
    case) and user embeddings as queries.
    """
    n_queries = int(ctx.option("ann_queries"))
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0xA22]))
    path = ctx.work / "bpr_embeddings.npz"
    if ctx.option("ann_embeddings") == "bpr":
        emb = _load(path)
        users = emb["users"]
        queries = users[rng.choice(users.shape[0], size=min(n_queries, users.shape[0]), replace=False)]
        return np.ascontiguousarray(emb["playlists"], np.float32), np.ascontiguousarray(queries, np.float32), \
            "bpr embeddings after the bpr stage's epoch (near-random)"
    if ctx.option("ann_embeddings") != "clustered":
        raise ValueError(f"--ann-embeddings must be 'clustered' or 'bpr', got {ctx.option('ann_embeddings')!r}")
    n = 10_000
    if (ctx.work / "playlist_song.npz").exists():
        n = int(_load_csr(ctx.work / "playlist_song.npz").shape[0])
    d, latent, clusters = int(ctx.option("bpr_dim")), 16, 60
    centres = rng.normal(size=(clusters, latent))
    projection = rng.normal(size=(latent, d)) / math.sqrt(latent)

    def draw(count: int) -> np.ndarray:
        z = centres[rng.integers(0, clusters, count)] + 0.35 * rng.normal(size=(count, latent))
        return (z @ projection + 0.05 * rng.normal(size=(count, d))).astype(np.float32)

    return draw(n), draw(n_queries), f"clustered: {clusters} clusters, latent dim {latent}, n={n:,}, d={d}"


def _normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f[:k], t).size / k for f, t in zip(found, truth, strict=True)]))


def ann_exact(ctx: StageContext) -> Measurement:
    """Exact cosine top-10 by blocked dense matrix products (the ground truth)."""
    items, queries, source = _ann_data(ctx)
    clock = _timer()
    a, q = _normalized(items), _normalized(queries)
    truth = np.empty((q.shape[0], 10), np.int64)
    for start in range(0, q.shape[0], 256):
        sims = q[start:start + 256] @ a.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        truth[start:start + 256] = np.take_along_axis(top, order, axis=1)
    seconds = clock()
    blas_threads = _blas_threads()
    _save(ctx.work / "ann_truth.npz", truth=truth)
    nq = int(q.shape[0])
    return Measurement(ctx.stage, "exact", "peer", "exact cosine, blocked numpy matmul (256 queries per block)",
                       "queries", nq, nq * 10, seconds, _rate(nq, seconds), "cpu",
                       metrics={"items": int(items.shape[0]), "dim": int(items.shape[1]), "recall_at_10": 1.0,
                                "embeddings": source},
                       processes=1, threads=blas_threads, threads_detail="numpy matmul on the BLAS threads")


ANNOY_SEARCH_K = (-1, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000)
HNSW_EF = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)


def _sweep(ctx: StageContext, settings, query_one, truth: np.ndarray, queries: np.ndarray, target: float = 0.95):
    """Run every query one at a time per setting until recall@10 reaches ``target``;
    return (chosen row, all rows) with recall and QPS per setting. When no setting reaches
    the target the last (largest) one is chosen and ``reached`` is False."""
    rows = []
    for setting in settings:
        clock = _timer()
        found = [query_one(q, setting) for q in queries]
        seconds = clock()
        row = {"setting": setting, "recall_at_10": round(_recall(found, truth), 4),
               "qps": round(_rate(len(queries), seconds), 1)}
        rows.append(row)
        ctx.log(f"setting {setting}: recall@10 {row['recall_at_10']:.3f}, {row['qps']:,.0f} QPS")
        if row["recall_at_10"] >= target:
            return {**row, "reached": True}, rows
    return {**rows[-1], "reached": False}, rows


def ann_annoy(ctx: StageContext) -> Measurement:
    """Annoy (angular, ``ann_trees`` trees): the smallest search_k reaching recall@10 >= 0.95."""
    from annoy import AnnoyIndex

    items, queries, source = _ann_data(ctx)
    truth = _load(ctx.work / "ann_truth.npz")["truth"]
    trees = int(ctx.option("ann_trees"))
    index = AnnoyIndex(items.shape[1], "angular")
    index.set_seed(ctx.seed)
    clock = _timer()
    for i, vector in enumerate(items):
        index.add_item(i, vector)
    index.build(trees, n_jobs=1)
    build_seconds = clock()
    chosen, rows = _sweep(ctx, ANNOY_SEARCH_K, lambda q, s: np.asarray(index.get_nns_by_vector(q, 10, search_k=s)),
                          truth, queries)
    nq = int(queries.shape[0])
    return Measurement(ctx.stage, "ours", "ours", f"Annoy angular, {trees} trees, search_k={chosen['setting']}",
                       "queries", nq, nq * 10, nq / chosen["qps"], float(chosen["qps"]), "cpu",
                       metrics={"recall_at_10": chosen["recall_at_10"], "reached_recall_0_95": chosen["reached"],
                                "search_k": chosen["setting"], "trees": trees,
                                "build_seconds": round(build_seconds, 3), "sweep": rows, "embeddings": source},
                       processes=1, threads=1, threads_detail="one query at a time, one thread (build on 1 thread)")


def ann_hnswlib(ctx: StageContext) -> Measurement:
    """hnswlib (cosine, M=16, ef_construction=200): the smallest ef reaching recall@10 >= 0.95."""
    import hnswlib

    items, queries, source = _ann_data(ctx)
    truth = _load(ctx.work / "ann_truth.npz")["truth"]
    index = hnswlib.Index(space="cosine", dim=items.shape[1])
    clock = _timer()
    index.init_index(max_elements=items.shape[0], ef_construction=200, M=16, random_seed=ctx.seed)
    index.add_items(items, np.arange(items.shape[0]), num_threads=1)
    build_seconds = clock()
    index.set_num_threads(1)

    def query(q: np.ndarray, ef: int) -> np.ndarray:
        index.set_ef(max(ef, 10))
        return index.knn_query(q[None, :], k=10)[0][0]

    chosen, rows = _sweep(ctx, HNSW_EF, query, truth, queries)
    nq = int(queries.shape[0])
    return Measurement(ctx.stage, "hnswlib", "peer", f"hnswlib cosine, M=16, ef_construction=200, ef={chosen['setting']}",
                       "queries", nq, nq * 10, nq / chosen["qps"], float(chosen["qps"]), "cpu",
                       metrics={"recall_at_10": chosen["recall_at_10"], "reached_recall_0_95": chosen["reached"],
                                "ef": chosen["setting"],
                                "build_seconds": round(build_seconds, 3), "sweep": rows, "embeddings": source},
                       processes=1, threads=1, threads_detail="one query at a time, one thread (build on 1 thread)")


# --------------------------------------------------------------------------------------
# ALS
# --------------------------------------------------------------------------------------


def als_ours(ctx: StageContext) -> Measurement:
    """``train_als`` (implicit ALS, BM25-weighted train positives)."""
    from spotify_assets.train.baselines import train_als

    positives = _train_positives(ctx)
    factors, iterations = int(ctx.option("als_factors")), int(ctx.option("als_iterations"))
    result = train_als(positives, factors=factors, iterations=iterations, seed=ctx.seed, num_threads=_threads(ctx))
    units = positives.nnz * iterations
    return Measurement(ctx.stage, "ours", "ours", f"implicit ALS (CPU), {factors} factors, {iterations} iterations, BM25",
                       "interactions x iterations", int(units), int(sum(positives.shape)), result.seconds,
                       _rate(units, result.seconds), "cpu",
                       metrics={"interactions": int(positives.nnz), "factors": factors, "iterations": iterations},
                       processes=1, threads=_threads(ctx) or os.cpu_count() or 1,
                       threads_detail="implicit num_threads (OpenMP), BLAS limited to 1")


# --------------------------------------------------------------------------------------
# registry and targets
# --------------------------------------------------------------------------------------


def _ours_result(ctx: StageContext) -> dict:
    """The ours measurement of this stage from this run (the harness writes it for the
    naive and peer children, which extrapolate to its totals)."""
    return json.loads((ctx.work / f"result.{ctx.stage}.ours.json").read_text())


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # ours | naive | peer
    run: Callable[[StageContext], Measurement]


@dataclass(frozen=True)
class Target:
    """A speed target: ``metric`` is 'rate' (ours rows/s), 'metric:<name>' (a metric of the
    ours row), 'ratio:<method>' (ours rows/s over that method's) or
    'metric_ratio:<name>:<method>' (a rate among the ours row's metrics over that method's
    rows/s); met when >= ``minimum``."""

    metric: str
    minimum: float
    label: str


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    needs: tuple[str, ...]
    writes: tuple[str, ...]
    methods: tuple[Method, ...]
    targets: tuple[Target, ...] = ()


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", "ingest MPD JSON -> DuckDB (+ ENTP, MSD)", (), ("warehouse.duckdb",),
          (Method("ours", "ours", ingest_ours), Method("naive", "naive", ingest_naive)),
          (Target("metric:mpd_mb_per_s", 100.0, "ingest >= 100 MB/s of MPD JSON"),)),
    Stage("match", "song matching + matrices", ("ingest",), ("user_song.npz", "playlist_song.npz"),
          (Method("ours", "ours", match_ours),)),
    Stage("label", "label: overlap -> score -> liked", ("match",), ("labels.npz", "exploration.npz"),
          (Method("ours", "ours", label_ours), Method("naive", "naive", label_naive),
           Method("duckdb-sql", "peer", label_duckdb)),
          (Target("rate", 20e6, ">= 20M scored pairs/s"), Target("ratio:naive", 50.0, ">= 50x naive"),
           Target("ratio:duckdb-sql", 1.0, "scored pairs/s >= DuckDB SQL"))),
    Stage("splits", "splits + ownership", ("label",), ("splits.npz",),
          (Method("ours", "ours", splits_ours),)),
    Stage("triplets", "BPR triplets", ("splits",), ("triplets.npz",),
          (Method("ours", "ours", triplets_ours), Method("naive", "naive", triplets_naive)),
          (Target("rate", 10e6, ">= 10M samples/s"), Target("ratio:naive", 100.0, ">= 100x per-user loop"))),
    Stage("eval_batches", "eval batches (val + test, 50 negatives)", ("splits",), ("eval.npz",),
          (Method("ours", "ours", eval_ours), Method("naive", "naive", eval_naive)),
          (Target("rate", 10e6, ">= 10M samples/s"), Target("ratio:naive", 100.0, ">= 100x per-user loop"))),
    Stage("bpr", "BPR training (fixed triplet count, 1 epoch; + 1 epoch each with per-epoch negatives)", ("triplets",), ("bpr.pt", "bpr_embeddings.npz"),
          (Method("ours", "ours", bpr_ours), Method("naive", "naive", bpr_naive),
           Method("implicit-bpr", "peer", bpr_implicit)),
          (Target("ratio:implicit-bpr", 1.0, "CPU samples/s >= implicit BPR"),
           Target("metric_ratio:uniform_negatives_per_s:implicit-bpr", 1.0,
                  "CPU samples/s with uniform negatives drawn per epoch >= implicit BPR"))),
    Stage("knn", "user KNN exact top-100", ("match",), ("knn.npz",),
          (Method("ours", "ours", knn_ours), Method("naive", "naive", knn_naive),
           Method("sklearn-brute", "peer", knn_sklearn)),
          (Target("ratio:naive", 100.0, ">= 100x one-query-at-a-time"),
           Target("ratio:sklearn-brute", 1.0, "queries/s >= sklearn brute-force cosine"))),
    Stage("ann", "nearest neighbours: exact vs Annoy vs hnswlib", (), ("ann_truth.npz",),
          (Method("exact", "peer", ann_exact), Method("ours", "ours", ann_annoy), Method("hnswlib", "peer", ann_hnswlib)),
          (Target("metric:recall_at_10", 0.95, "Annoy recall@10 >= 0.95 (QPS beside hnswlib's)"),)),
    Stage("als", "ALS baseline (implicit)", ("splits",), (),
          (Method("ours", "ours", als_ours),)),
)}

STAGE_ORDER: tuple[str, ...] = tuple(STAGES)


def run_method(ctx: StageContext) -> Measurement:
    """Run one method of one stage (inside the child process)."""
    stage = STAGES[ctx.stage]
    for method in stage.methods:
        if method.name == ctx.method:
            return method.run(ctx)
    raise KeyError(f"stage {ctx.stage} has no method {ctx.method!r}; it has {[m.name for m in stage.methods]}")


def evaluate_targets(stage: Stage, rows: dict[str, dict]) -> list[dict]:
    """Targets of ``stage`` against its measured rows (by method name): value, minimum, met.

    ``metric`` is "rate" (ours rows/s), "metric:<key>" (a metric of ours), "ratio:<method>"
    (ours rows/s over that method's) or "metric_ratio:<key>:<method>" (a rate among ours'
    metrics over that method's rows/s)."""
    ours = rows.get("ours")
    out = []
    for target in stage.targets:
        value = None
        if ours is not None:
            if target.metric == "rate":
                value = ours["rows_per_s"]
            elif target.metric.startswith("metric:"):
                value = ours["metrics"].get(target.metric.split(":", 1)[1])
            elif target.metric.startswith("ratio:"):
                other = rows.get(target.metric.split(":", 1)[1])
                if other is not None and other["rows_per_s"] > 0:
                    value = ours["rows_per_s"] / other["rows_per_s"]
            elif target.metric.startswith("metric_ratio:"):  # metric_ratio:<ours metric>:<method>
                _, key, name = target.metric.split(":", 2)
                other, mine = rows.get(name), ours["metrics"].get(key)
                if other is not None and other["rows_per_s"] > 0 and mine is not None:
                    value = mine / other["rows_per_s"]
        out.append({"stage": stage.name, "target": target.label, "metric": target.metric, "minimum": target.minimum,
                    "value": None if value is None else float(value),
                    "met": None if value is None else bool(value >= target.minimum)})
    return out


def ratio(rows: dict[str, dict], other: str) -> float | None:
    """ours rows/s over ``other``'s (None when either is missing)."""
    ours, them = rows.get("ours"), rows.get(other)
    if ours is None or them is None or them["rows_per_s"] <= 0:
        return None
    return float(ours["rows_per_s"] / them["rows_per_s"])

