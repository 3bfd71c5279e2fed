"""``python -m benchmarks.continuation``: the RecSys Challenge 2018 continuation table at a
scale, every model on the same held-out playlists, written to
``results/continuation_<scale>.md`` (and ``.json``).

What it runs (the same pure functions as the tracks asset group):

1. the raw files of the scale (the harness's cache: generated once by ``spotify_assets.synth``);
2. MPD slices -> DuckDB and the SQL models the track models read (``playlist_track_ids``,
   ``track_dictionary``, ``stg_playlists``, ...), once per scale, in
   ``<cache>/<scale>/work/continuation.duckdb``;
3. the ``next_track_examples`` split (seeded, by playlist: 80 / 10 / 10);
4. item2vec with the ``track_embeddings`` asset's defaults, ALS with its settings picked by
   val NDCG from a grid (as the original notebook swept alpha), the two-tower model
   (early-stopped on val NDCG), co-occurrence and popularity, all fitted on the train
   playlists only;
5. the challenge protocol on the test playlists (:mod:`spotify_assets.tracks.challenge`):
   R-precision with artist credit, NDCG, clicks and precision@100 per category and overall,
   and the issue's targets for the two-tower model, met or missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import DEFAULT_CACHE, DEFAULT_RESULTS, SCALES, Log, RunSettings, _git, _machine, ensure_data
from spotify_assets.atomic import atomic_write

WAREHOUSE = "continuation.duckdb"
#: the SQL models the track models read, in dependency order
MODELS = ("stg_playlist_tracks", "stg_playlists", "track_dictionary", "artist_dictionary", "album_dictionary",
          "playlist_track_ids")


def prepare_warehouse(raw: Path, work: Path, log: Log, threads: int) -> Path:
    """MPD slices -> DuckDB -> the SQL models above, unless a complete copy is there."""
    import duckdb

    from spotify_assets.ingest import list_mpd_slices, load_mpd_slices
    from spotify_assets.sql.models import discover_models, materialize_model

    database = work / WAREHOUSE
    marker = work / (WAREHOUSE + ".complete")
    if marker.exists() and database.exists():
        log(f"using the warehouse {database}")
        return database
    work.mkdir(parents=True, exist_ok=True)
    for path in (database, database.with_name(database.name + ".wal"), marker):
        path.unlink(missing_ok=True)
    slices = list_mpd_slices(raw / "mpd")
    if not slices:
        raise FileNotFoundError(f"no MPD slices in {raw / 'mpd'}")
    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        con.execute("SET enable_progress_bar = false")
        _, rejected = load_mpd_slices(con, [(p, p.name) for p in slices], workers=max(1, threads))
        if rejected:
            raise rejected[0]
        log(f"ingested {len(slices)} MPD slices in {time.perf_counter() - started:.0f}s")
        models = {m.name: m for m in discover_models()}
        for name in MODELS:
            materialize_model(con, models[name])
    marker.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
    log(f"warehouse ready in {time.perf_counter() - started:.0f}s")
    return database


def _parse_overrides(pairs: list[str], config_type: type) -> dict:
    """``key=value`` pairs -> typed fields of the dataclass ``config_type``."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields or not _:
            raise SystemExit(f"--two-tower {pair!r}: want KEY=VALUE with KEY in {sorted(fields)}")
        default = getattr(config_type(), key)
        if isinstance(default, tuple):
            out[key] = tuple(int(v) for v in value.split(","))
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            out[key] = type(default)(value)
    return out


def run(args: argparse.Namespace) -> dict:
    """Everything above; returns the results document (also written to disk)."""
    import duckdb
    import torch

    from spotify_assets.defs.tracks.assets import TrackEmbeddingConfig
    from spotify_assets.tracks import challenge as ch
    from spotify_assets.tracks import continuation as cont
    from spotify_assets.tracks.item2vec import Item2VecConfig, build_vocabulary, l2_normalize, train_item2vec
    from spotify_assets.tracks.playlists import load_playlists
    from spotify_assets.tracks.two_tower import TwoTowerConfig, load_two_tower, train_two_tower

    settings = RunSettings(scale=args.scale, seed=args.seed, cache=Path(args.cache), results=Path(args.results))
    base = settings.cache / settings.scale
    log = Log(base / "continuation.log")
    if args.threads:
        torch.set_num_threads(args.threads)
    raw, data_stats = ensure_data(settings, log)
    database = prepare_warehouse(raw, base / "work", log, args.ingest_threads or os.cpu_count() or 1)
    started = time.perf_counter()
    with duckdb.connect(str(database), read_only=True) as con:
        data = load_playlists(con, with_split=False, with_names=True, with_features=True)
    data.split = cont.split_playlists(data.pids, args.seed, args.val_share, args.test_share)
    log(f"{data.pids.size:,} playlists, {data.tracks.size:,} rows, {data.n_tracks:,} tracks "
        f"({time.perf_counter() - started:.0f}s)")
    train_indptr, train_tracks = data.part(cont.TRAIN)
    train = cont.playlist_track_matrix(train_indptr, train_tracks, data.n_tracks)
    known = np.asarray(train.sum(axis=0)).ravel() > 0
    track_artist = data.track_artist()
    test = ch.build_challenge_set(data.indptr, data.tracks, data.split == cont.TEST, known, args.seed,
                                  per_category=args.per_category, min_held_out=args.min_held_out)
    val = ch.build_challenge_set(data.indptr, data.tracks, data.split == cont.VAL, known, args.seed + 1,
                                 per_category=args.val_per_category, min_held_out=args.min_held_out)
    log(f"test queries {test.size:,} (skipped: {test.skipped or 'none'}), val queries {val.size:,}")
    timings: dict[str, float] = {}

    # item2vec as the track_embeddings asset trains it by default
    t = time.perf_counter()
    defaults = TrackEmbeddingConfig()
    vocab = build_vocabulary(train_tracks, data.n_tracks, defaults.min_count)
    tokens = vocab.encode(train_tracks)
    keep = tokens >= 0
    i2v_config = Item2VecConfig(dim=defaults.dim, window=defaults.window, negatives=defaults.negatives,
                                epochs=defaults.epochs, batch_size=defaults.batch_size, lr=defaults.lr,
                                subsample=defaults.subsample, seed=args.seed)
    i2v = train_item2vec(np.r_[0, np.cumsum(keep)][train_indptr].astype(np.int64), tokens[keep], vocab.counts,
                         i2v_config, accelerator=args.accelerator)
    timings["item2vec_train"] = time.perf_counter() - t
    log(f"item2vec: {vocab.size:,} tracks, {i2v.pairs_trained:,} pairs in {i2v.seconds:.0f}s")

    # ALS: the grid point with the best val NDCG
    t = time.perf_counter()
    grid = [ch.ALSSettings(factors=f, alpha=a, iterations=args.als_iterations, regularization=args.als_regularization)
            for f in args.als_factors for a in args.als_alphas]
    als, als_trials = ch.select_als(train, val, track_artist, grid, seed=args.seed)
    timings["als_selection"] = time.perf_counter() - t
    log(f"ALS: picked {als} by val NDCG ({len(grid)} settings, {timings['als_selection']:.0f}s)")

    # the two-tower model
    two_tower_config = dataclasses.replace(TwoTowerConfig(seed=args.seed), **_parse_overrides(args.two_tower,
                                                                                              TwoTowerConfig))
    checkpoint = base / "work" / "two_tower.pt"
    result = train_two_tower(train_indptr, train_tracks, data.part_names(cont.TRAIN), data.features,
                             two_tower_config, checkpoint, val=(val, data.names), track_artist=track_artist,
                             accelerator=args.accelerator, log=log)
    timings["two_tower_train"] = result.train_seconds
    model = load_two_tower(checkpoint)
    log(f"two-tower: best epoch {result.best_epoch} (val NDCG {result.best_val_ndcg:.4f}), "
        f"{result.train_seconds:.0f}s on {result.device}")

    rankers = ch.baseline_rankers(train, item2vec=(l2_normalize(i2v.vectors), vocab.track_ids), als=als,
                                  seed=args.seed)
    rankers["two_tower"] = ch.model_ranker(model, data.names)
    rows = ch.evaluate_models(rankers, test, track_artist, log=log)
    verdicts = ch.target_verdicts(rows)
    document = {
        "schema": "spotify_assets.benchmarks.continuation/1",
        "scale": args.scale,
        "seed": args.seed,
        "command": "python -m benchmarks.continuation " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git(),
        "machine": {**_machine(), "load_average": list(os.getloadavg())},
        "data": {**data_stats, "playlists": int(data.pids.size), "track_rows": int(data.tracks.size),
                 "tracks": int(data.n_tracks), "train_playlists": int(train.shape[0]),
                 "test_queries": test.size, "val_queries": val.size, "skipped_categories": test.skipped},
        "item2vec": {**dataclasses.asdict(i2v_config), "min_count": defaults.min_count, "tracks": vocab.size},
        "als": {"picked": dataclasses.asdict(als), "trials": als_trials},
        "two_tower": {"config": dataclasses.asdict(two_tower_config), "best_epoch": result.best_epoch,
                      "best_val_ndcg": result.best_val_ndcg, "epochs_run": result.epochs_run,
                      "vocabulary": result.vocab_size, "examples_per_second": round(result.examples_per_second),
                      "train_seconds": round(result.train_seconds, 1), "device": result.device,
                      "history": result.history},
        "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
        "rows": rows,
        "targets": verdicts,
    }
    settings.results.mkdir(parents=True, exist_ok=True)
    stem = settings.results / f"continuation_{args.scale}"
    _write(stem.with_suffix(".json"), json.dumps(document, indent=2, default=float) + "\n")
    _write(stem.with_suffix(".md"), render_markdown(document))
    log(f"wrote {stem}.md and .json")
    return document


def _write(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _table(rows: list[dict]) -> str:
    if not rows:
        return "_(none)_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) else ("met" if v is True else "MISSED" if v is False else str(v))
                 for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(document: dict) -> str:
    """The results document as markdown: settings, the per-metric tables, the targets."""
    from spotify_assets.tracks.challenge import results_markdown

    data, tt, als = document["data"], document["two_tower"], document["als"]
    met = sum(1 for v in document["targets"] if v["met"])
    skipped = data["skipped_categories"]
    history = [{k: v for k, v in row.items() if k in ("epoch", "train_loss", "val_ndcg", "val_r_precision")}
               for row in tt["history"]]
    return "\n".join([
        f"# Playlist continuation, RecSys Challenge 2018 protocol ({document['scale']} scale)",
        "",
        f"`{document['command']}` at {document['measured_at']}, commit `{document['git']['commit'][:12]}`, "
        f"load average {', '.join(f'{x:.1f}' for x in document['machine']['load_average'])} on "
        f"{document['machine']['cpus']} CPUs.",
        "",
        f"{data['playlists']:,} playlists ({data['train_playlists']:,} train), {data['track_rows']:,} track rows, "
        f"{data['tracks']:,} tracks. Every model ranks 500 tracks for the same {data['test_queries']:,} test "
        f"queries (test playlists, never in any model's training data); "
        + (f"categories skipped for too few long playlists: {skipped}." if skipped else "no category skipped."),
        "",
        f"Models: popularity and co-occurrence of the train playlists; item2vec with the `track_embeddings` "
        f"asset's defaults; ALS (implicit, BM25) with {als['picked']} picked by val NDCG over "
        f"{len(als['trials'])} settings, queries folded in; the two-tower model (best epoch {tt['best_epoch']} by "
        f"val NDCG {tt['best_val_ndcg']:.4f}, {tt['train_seconds']:.0f}s on {tt['device']}, vocabulary "
        f"{tt['vocabulary']:,} tracks).",
        "",
        results_markdown(document["rows"]),
        "",
        f"## Targets for the two-tower model: {met} of {len(document['targets'])} met",
        "",
        "Title only and <= 5 seed tracks: beat ALS and item2vec; other categories: within 0.01 of the best "
        "model. `margin` > 0 (beat) or >= 0 (within) means met.",
        "",
        _table(document["targets"]),
        "",
        "## ALS settings (val)",
        "",
        _table(als["trials"]),
        "",
        "## Two-tower training (val)",
        "",
        f"Settings: `{json.dumps(tt['config'])}`",
        "",
        _table(history),
        "",
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.continuation",
        description="The RecSys Challenge 2018 continuation table (popularity, co-occurrence, item2vec, ALS, "
                    "two-tower) on held-out playlists of generated data; writes RESULTS/continuation_<scale>.md "
                    "and .json.",
        epilog="The committed table: python -m benchmarks.continuation --scale bench "
               "(~1 hour on 2 shared cores; see benchmarks/README.md).")
    parser.add_argument("--scale", choices=SCALES, default="bench")
    parser.add_argument("--seed", type=int, default=0, help="data, split, sampling and model seed (default 0)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="data cache (default %(default)s)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default %(default)s)")
    parser.add_argument("--per-category", type=int, default=1000,
                        help="test playlists per category, 0 = all qualifying (default 1000, as the challenge)")
    parser.add_argument("--val-per-category", type=int, default=200,
                        help="val playlists per category for early stopping and the ALS pick (default 200)")
    parser.add_argument("--min-held-out", type=int, default=1, help="held-out tracks a query needs (default 1)")
    parser.add_argument("--val-share", type=float, default=0.1)
    parser.add_argument("--test-share", type=float, default=0.1)
    parser.add_argument("--als-factors", type=int, nargs="+", default=[64], help="ALS grid: factors (default 64)")
    parser.add_argument("--als-alphas", type=float, nargs="+", default=[1.0, 10.0, 40.0],
                        help="ALS grid: alpha (default 1 10 40)")
    parser.add_argument("--als-iterations", type=int, default=15)
    parser.add_argument("--als-regularization", type=float, default=0.05)
    parser.add_argument("--two-tower", action="append", default=[], metavar="KEY=VALUE",
                        help="a TwoTowerConfig field, e.g. --two-tower max_epochs=8 --two-tower dim=64 (repeatable)")
    parser.add_argument("--accelerator", default="auto", help="torch device for item2vec and the two-tower model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads outside the models' own setting "
                        "(0 = torch's default)")
    parser.add_argument("--ingest-threads", type=int, default=0, help="MPD reader processes (0 = one per core)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    document = run(args)
    met = sum(1 for v in document["targets"] if v["met"])
    print(f"{met} of {len(document['targets'])} targets met; table in "
          f"{Path(args.results) / f'continuation_{args.scale}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
