"""``python -m benchmarks``: the performance harness (docs/architecture.md#performance). See ``--help``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_CACHE,
    DEFAULT_NAIVE_BUDGET,
    DEFAULT_RESULTS,
    REPO_ROOT,
    SCALES,
    RunSettings,
    child_main,
    run,
)
from benchmarks.stages import DEFAULT_OPTIONS, STAGE_ORDER, STAGES

DESCRIPTION = """\
Measure every pipeline stage on generated data, next to the naive method the original
system used and the library peers, and check the speed targets.

  python -m benchmarks run --scale tiny                 # smoke test, ~1 minute
  python -m benchmarks run --scale bench                # the committed tables (long)
  python -m benchmarks run --scale bench --stages label,knn
  python -m benchmarks list                             # stages, methods and targets
  python -m benchmarks leaderboard --scale bench        # the model leaderboard through Dagster
  python -m benchmarks loadtest                         # the service under load (after `make run`)
"""

EPILOG = f"""\
data
  The project's seeded generator (spotify_assets.synth) writes the raw MPD/ENTP/MSD files
  once per scale into CACHE/<scale>/raw (default {DEFAULT_CACHE}, ignored by git through
  `data/*`); later runs reuse them. Stages hand their arrays to each other through
  CACHE/<scale>/work; a requested stage whose inputs are missing first runs its
  prerequisites (ours only, not reported). Progress goes to stderr and CACHE/<scale>/bench.log.

stages (in pipeline order)
{chr(10).join(f'  {name:<13}{STAGES[name].title}' for name in STAGE_ORDER)}

measurement
  Every (stage, method) runs in its own subprocess; seconds are the kernel's wall time,
  peak RSS is the child's ru_maxrss (os.wait4), device is where it ran. Rates are input
  units per second (track rows, scored pairs, triplets, negatives, queries...). Every row
  also records cpu (model and vector flags), processes (e.g. label's forked shards) and
  threads (DuckDB, torch, implicit or BLAS threads; threads_detail says which).

naive methods and peers (same data, same run)
  ingest     json.load + pandas.json_normalize per slice, DataFrames inserted into DuckDB
  label      per-user dict of overlaps and one Python score per overlapping pair; peer:
             DuckDB SQL (join on song, count per pair, the kernel's score, row_number()
             top ranks per user) on label_shards threads, checked against ours
             (liked_agreement, hard_pool_agreement, scored_pairs_agreement = 1.0)
  triplets   per-user Python loop, sets, random.Random rejection sampling
  eval       per-row Python loop, random.sample + rejection
  bpr        per-sample torch Dataset + DataLoader + autograd SGD; peer: implicit BPR
             (same factors, same train positives, ~same number of samples); ours also
             trains 1 epoch each with uniform and hard negatives drawn per epoch over
             those positives (metrics uniform/hard_negatives_per_s, second target)
  knn        one query at a time (sparse row x all users, argpartition); peer: sklearn
             NearestNeighbors(metric="cosine", algorithm="brute"), same k, one thread,
             checked against ours (similarity_agreement, neighbor_agreement = 1.0)
  ann        exact blocked matmul vs Annoy vs hnswlib at the smallest search_k / ef
             reaching recall@10 >= 0.95, one query at a time, one thread, over
             BPR-sized embeddings: --ann-embeddings clustered (default; seeded, with
             cluster structure like trained ones) or bpr (the bpr stage's output)
  threads    --threads N sets torch's and implicit's thread count (0 = library
             defaults, all cores); on a shared, oversubscribed machine 1 thread avoids
             OpenMP spin-waiting (measured: 16x slower BPR with 2 threads under load)
  A naive method, and the DuckDB and sklearn peers, stop after --naive-budget seconds (default per scale:
  {', '.join(f'{k} {v:g}s' for k, v in DEFAULT_NAIVE_BUDGET.items())}) and its time for the whole
  input is extrapolated linearly ("extrapolated from N rows" in the table).

targets (met / MISSED in the table)
{chr(10).join(f'  {name:<13}{t.label}' for name in STAGE_ORDER for t in STAGES[name].targets)}

outputs
  RESULTS/<scale>.json (schema spotify_assets.benchmarks/1: rows, comparisons, targets,
  machine, data) and RESULTS/<scale>.md (the tables), default RESULTS = {DEFAULT_RESULTS}.
  Rerunning a subset of stages replaces only those stages' rows (same scale and seed).
"""


def _stage_list(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGE_ORDER)}")
    return tuple(s for s in STAGE_ORDER if s in names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="run stages and write the results tables",
                                 description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_argument("--scale", choices=SCALES, default="tiny",
                        help="generator preset: tiny (200 users x 500 playlists, seconds), sample, bench "
                             "(100k x 100k), full (1M x 1M, hours and ~100 GB). Default: tiny.")
    runner.add_argument("--stages", type=_stage_list, default=STAGE_ORDER,
                        help=f"comma-separated subset of: {','.join(STAGE_ORDER)} (default: all)")
    runner.add_argument("--seed", type=int, default=0, help="drives the data and every draw (default 0)")
    runner.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="folder for generated data and stage hand-off files (default %(default)s)")
    runner.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="folder for <scale>.json and <scale>.md (default %(default)s)")
    runner.add_argument("--naive-budget", type=float, default=None,
                        help="seconds each naive method may run before it is extrapolated (default per scale)")
    runner.add_argument("--no-naive", action="store_true", help="skip the naive methods")
    runner.add_argument("--no-peers", action="store_true",
                        help="skip library peers (DuckDB SQL labels, sklearn KNN, implicit BPR, hnswlib)")
    runner.add_argument("--repeats", type=int, default=1,
                        help="run each method of the requested stages N times, interleaved, and report the "
                             "median rows/s (every repeat's rate and load average in the JSON row's repeats)")
    runner.add_argument("--child-timeout", type=float, default=3 * 3600.0,
                        help="kill a method's subprocess after this many seconds (default 3 h)")
    for name, spec in DEFAULT_OPTIONS.items():
        runner.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            type=str if isinstance(spec["default"], str) else int,
                            help=f"default {spec.get('default')}" + "".join(
                                f", {k} {v}" for k, v in spec.items() if k != "default"))
    commands.add_parser("list", help="print the stages, their methods and targets")
    board = commands.add_parser(
        "leaderboard", help="run leaderboard_job through Dagster at a scale and write results/leaderboard_<scale>.md",
        description="Generate (or reuse) the scale's data, run `dagster job execute -j leaderboard_job` with its own "
                    "DAGSTER_HOME and data folder under CACHE/<scale>/, and write the model_leaderboard table as "
                    "RESULTS/leaderboard_<scale>.md and .json (test and validation, models x segments x metrics, "
                    "train seconds, leak-free). At bench scale this takes about an hour on 2 cores.")
    board.add_argument("--scale", choices=SCALES, default="bench", help="generator preset (default bench)")
    board.add_argument("--seed", type=int, default=0, help="drives the data and every draw (default 0)")
    board.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="data and run folders (default %(default)s)")
    board.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="output folder (default %(default)s)")
    board.add_argument("--config", type=Path, default=None,
                       help="run config YAML for leaderboard_job (default: benchmarks/leaderboard_<scale>.yaml "
                            "when it exists, else the assets' defaults)")
    load = commands.add_parser(
        "loadtest", help="requests/s and p50/p95 of the service (API and page) for the Annoy, exact and song-ranker "
                         "paths; writes results/loadtest_<name>.md",
        description="Over a materialized pipeline (`make run`), build a vector bundle (the better of BPR/ALS on "
                    "validation) and a song-ranker bundle with the pipeline's own assets in a scratch folder, start "
                    "the service for each path (vector + Annoy, vector + exact, song ranker), and drive the API and "
                    "the page with the project's load generator; medians of the repeats, machine load recorded.")
    load.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data",
                      help="a data folder the pipeline ran on (default %(default)s, what `make run` writes)")
    load.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="output folder (default %(default)s)")
    load.add_argument("--name", default="sample", help="results/loadtest_<name>.md (default %(default)s)")
    load.add_argument("--concurrency", type=int, default=4, help="keep-alive clients (default %(default)s)")
    load.add_argument("--seconds", type=float, default=10.0, help="seconds per repeat (default %(default)s)")
    load.add_argument("--repeats", type=int, default=3, help="repeats per cell; the median is reported (default 3)")
    return parser


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks _child")
    for name in ("stage", "method", "scale", "raw", "work", "options", "result"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--budget", type=float, required=True)
    a = parser.parse_args(argv)
    return child_main(a.stage, a.method, a.scale, a.seed, Path(a.raw), Path(a.work), a.budget, json.loads(a.options),
                      Path(a.result))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:  # internal: one method in a fresh process
        return _child(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for name in STAGE_ORDER:
            stage = STAGES[name]
            print(f"{name}: {stage.title}")
            print(f"  methods: {', '.join(f'{m.name} ({m.kind})' for m in stage.methods)}")
            for target in stage.targets:
                print(f"  target: {target.label}")
        return 0
    if args.command == "leaderboard":
        from benchmarks.leaderboard import run_leaderboard

        run_leaderboard(args.scale, args.seed, args.cache, args.results, args.config,
                        log=lambda message: print(message, file=sys.stderr, flush=True))
        return 0
    if args.command == "loadtest":
        from benchmarks.loadtest import run_loadtest

        run_loadtest(args.data_dir, args.results, concurrency=args.concurrency, seconds=args.seconds,
                     repeats=args.repeats, name=args.name, log=lambda message: print(message, file=sys.stderr, flush=True))
        return 0
    options = {name: getattr(args, name) for name in DEFAULT_OPTIONS if getattr(args, name) is not None}
    results = run(RunSettings(scale=args.scale, seed=args.seed, stages=args.stages, cache=args.cache,
                              results=args.results, naive_budget=args.naive_budget, naive=not args.no_naive,
                              peers=not args.no_peers, child_timeout=args.child_timeout, options=options,
                              repeats=args.repeats))
    missing = [r for r in results["rows"] if "error" in r]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
