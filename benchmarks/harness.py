"""The benchmark driver: data cache, one subprocess per (stage, method), results files.

The parent process never imports the kernels. For every method of every stage it starts
``python -m benchmarks _child ...``, waits for it with ``os.wait4`` (which returns that
child's own resource usage, so ``ru_maxrss`` is the method's peak RSS and nothing else's)
and reads the :class:`~benchmarks.stages.Measurement` the child wrote as JSON. After each
stage it rewrites ``<results>/<scale>.json`` and ``<scale>.md``, so an interrupted run
still leaves the stages it finished.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from benchmarks.stages import STAGE_ORDER, STAGES, StageContext, evaluate_targets, ratio, run_method
from spotify_assets.atomic import atomic_write

SCHEMA = "spotify_assets.benchmarks/1"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / "data" / "bench_cache"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results"
#: seconds each naive method may run before it stops and is extrapolated
DEFAULT_NAIVE_BUDGET = {"tiny": 5.0, "sample": 20.0, "bench": 60.0, "full": 120.0}
SCALES = ("tiny", "sample", "bench", "full")


@dataclass
class RunSettings:
    """Everything ``python -m benchmarks run`` was asked for."""

    scale: str = "tiny"
    seed: int = 0
    stages: tuple[str, ...] = STAGE_ORDER
    cache: Path = DEFAULT_CACHE
    results: Path = DEFAULT_RESULTS
    naive_budget: float | None = None
    naive: bool = True
    peers: bool = True
    child_timeout: float = 3 * 3600.0
    options: dict = field(default_factory=dict)
    repeats: int = 1

    @property
    def budget(self) -> float:
        return self.naive_budget if self.naive_budget is not None else DEFAULT_NAIVE_BUDGET[self.scale]


class Log:
    """Progress lines to stderr and to ``<cache>/<scale>/bench.log``."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def __call__(self, message: str) -> None:
        line = f"[bench {time.strftime('%H:%M:%S')}] {message}"
        print(line, file=sys.stderr, flush=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("numpy", "scipy", "duckdb", "torch", "pytorch-lightning", "implicit", "annoy", "hnswlib",
                    "scikit-learn", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def _git() -> dict:
    """HEAD commit and the kernel files that differ from it (the run measured the working tree)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.rstrip()  # keep the leading space of porcelain " M path"
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "spotify_assets", "benchmarks").splitlines()
             if line[3:].endswith(".py")]
    return {"commit": git("rev-parse", "HEAD"), "modified_python_files": dirty}


def cpu_model() -> dict:
    """The CPU's model name and the vector extensions that decide kernel speed (from
    /proc/cpuinfo on Linux; the platform's processor string elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "vector_flags": []}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "asimd", "sve")
    return {"model": fields.get("model name") or fields.get("Model name") or platform.machine(),
            "vector_flags": [f for f in wanted if f in flags]}


def _machine() -> dict:
    cpu = cpu_model()
    return {"platform": platform.platform(), "processor": cpu["model"], "vector_flags": cpu["vector_flags"],
            "cpus": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "versions": _versions()}


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def ensure_data(settings: RunSettings, log: Log) -> tuple[Path, dict]:
    """Generate ``<cache>/<scale>/raw`` with the project's generator unless a complete copy
    for this seed is there; return (raw folder, the generator's summary statistics)."""
    raw = settings.cache / settings.scale / "raw"
    marker = raw / ".complete.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("scale") != settings.scale or done.get("seed") != settings.seed:
        log(f"generating {settings.scale} data (seed {settings.seed}) into {raw}")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spotify_assets.synth", "--scale", settings.scale, "--seed",
                        str(settings.seed), "--out", str(raw)], check=True, cwd=REPO_ROOT, env=_child_env(),
                       stdout=subprocess.DEVNULL)
        marker.write_text(json.dumps({"scale": settings.scale, "seed": settings.seed,
                                      "seconds": round(time.perf_counter() - started, 1)}))
        log(f"generated in {time.perf_counter() - started:.1f}s")
    else:
        log(f"using cached {settings.scale} data in {raw}")
    summary_path = raw / "truth" / "summary.json"
    stats = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    keep = ("users", "playlists", "listens", "track_rows", "slices", "overlap_share", "unique_tracks")
    return raw, {k: stats[k] for k in keep if k in stats}


# --------------------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tree_pss_kb(root: int) -> int | None:
    """Summed PSS (KiB) of process ``root`` and its descendants: pages shared by forked
    workers count once, so this is the tree's real footprint. None where /proc lacks it."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack, seen = 0, [root], False
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except OSError:
            continue
    return total if seen else None


class _TreeMemorySampler(threading.Thread):
    """Samples the child's process-tree PSS every ``interval`` s; ``peak_mb`` is the largest
    (ru_maxrss only sees the single largest process of a multi-process stage)."""

    def __init__(self, pid: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            sample = _tree_pss_kb(self.pid)
            if sample is not None:
                self.peak_kb = max(self.peak_kb or 0, sample)

    @property
    def peak_mb(self) -> float | None:
        return None if self.peak_kb is None else round(self.peak_kb / 1024, 1)


def run_child(settings: RunSettings, stage: str, method: str, raw: Path, work: Path, log: Log) -> dict:
    """Run one method in a fresh interpreter; return its measurement dict plus
    ``peak_rss_mb`` (the child's ru_maxrss from wait4), ``peak_tree_pss_mb`` (the largest
    sampled PSS of the child and its workers together), ``wall_seconds`` and, on failure,
    ``error``."""
    result_path = work / f"result.{stage}.{method}.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks", "_child", "--stage", stage, "--method", method,
           "--scale", settings.scale, "--seed", str(settings.seed), "--raw", str(raw), "--work", str(work),
           "--budget", str(settings.budget), "--options", json.dumps(settings.options), "--result", str(result_path)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_child_env())
    timer = threading.Timer(settings.child_timeout, proc.kill)
    timer.start()
    sampler = _TreeMemorySampler(proc.pid)
    sampler.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        sampler.done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    peak_mb = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    if proc.returncode != 0 or not result_path.exists():
        log(f"{stage}/{method} FAILED (exit {proc.returncode}) after {wall:.1f}s")
        return {"stage": stage, "method": method, "error": f"exit status {proc.returncode}",
                "wall_seconds": round(wall, 3), "peak_rss_mb": peak_mb, "cpu": cpu_model()}
    row = json.loads(result_path.read_text())
    row.update(wall_seconds=round(wall, 3), peak_rss_mb=peak_mb, peak_tree_pss_mb=sampler.peak_mb)
    if method != "ours":
        result_path.unlink()
    return row


def child_main(stage: str, method: str, scale: str, seed: int, raw: Path, work: Path, budget: float, options: dict,
               result: Path) -> int:
    """Entry point of ``python -m benchmarks _child``: run one method, write its JSON."""
    ctx = StageContext(stage=stage, method=method, scale=scale, seed=seed, raw=raw, work=work, budget_s=budget,
                       options=options)
    measurement = run_method(ctx)
    measurement.cpu = cpu_model()  # the machine this method ran on, in its own row
    with atomic_write(result) as tmp:
        tmp.write_text(json.dumps(measurement.to_json(), indent=1, default=_json_default))
    return 0


def _json_default(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


def _closure(requested: tuple[str, ...], work: Path, state: dict) -> list[str]:
    """Requested stages plus the prerequisites whose outputs are missing, in pipeline order."""
    need = set(requested)
    changed = True
    while changed:
        changed = False
        for name in list(need):
            for dep in STAGES[name].needs:
                outputs_there = dep in state.get("done", []) and all((work / f).exists() for f in STAGES[dep].writes)
                if dep not in need and not outputs_there:
                    need.add(dep)
                    changed = True
    return [s for s in STAGE_ORDER if s in need]


def _load_state(work: Path, seed: int) -> dict:
    path = work / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    return state if state.get("seed") == seed else {"seed": seed, "done": []}


def _save_state(work: Path, state: dict) -> None:
    (work / "state.json").write_text(json.dumps(state))


def _previous_results(path: Path, settings: RunSettings) -> dict[str, list[dict]]:
    """Rows of an earlier run with the same schema, scale and seed, by stage (kept for the
    stages this run does not redo)."""
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    if old.get("schema") != SCHEMA or old.get("scale") != settings.scale or old.get("seed") != settings.seed:
        return {}
    by_stage: dict[str, list[dict]] = {}
    for row in old.get("rows", []):
        by_stage.setdefault(row["stage"], []).append(row)
    return by_stage


def run(settings: RunSettings) -> dict:
    """Run the requested stages (and missing prerequisites); write and return the results."""
    unknown = sorted(set(settings.stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; choose from {', '.join(STAGE_ORDER)}")
    base = settings.cache / settings.scale
    log = Log(base / "bench.log")
    raw, data = ensure_data(settings, log)
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    state = _load_state(work, settings.seed)
    plan = _closure(tuple(settings.stages), work, state)
    settings.results.mkdir(parents=True, exist_ok=True)
    json_path, md_path = settings.results / f"{settings.scale}.json", settings.results / f"{settings.scale}.md"
    rows_by_stage = _previous_results(json_path, settings)
    log(f"scale {settings.scale}, seed {settings.seed}, stages {', '.join(plan)} "
        f"(naive budget {settings.budget:g}s per method)")
    failed: set[str] = set()
    provenance = {"measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "git_commit": _git()["commit"], "options": dict(settings.options)}
    for number, name in enumerate(plan, start=1):
        stage = STAGES[name]
        if any(dep in failed for dep in stage.needs):
            log(f"[{number}/{len(plan)}] {name}: skipped (a prerequisite failed)")
            failed.add(name)
            continue
        requested = name in settings.stages
        if requested:  # the exact search is the ground truth Annoy's recall needs: never skipped
            methods = [m for m in stage.methods if m.kind == "ours" or (m.kind == "naive" and settings.naive)
                       or (m.kind == "peer" and (settings.peers or m.name == "exact"))]
        else:
            methods = [m for m in stage.methods if m.kind == "ours"]
        log(f"[{number}/{len(plan)}] {name}: {stage.title}"
            + ("" if requested else " (prerequisite, not reported)"))
        stage_rows: list[dict] = []
        repeats = max(1, settings.repeats) if requested else 1
        tries: dict[str, list[dict]] = {}
        for attempt in range(repeats):  # methods interleaved, so a load change hits all of them
            for method in methods:
                if method.name in tries and "error" in tries[method.name][-1]:
                    continue
                log(f"  {name}/{method.name} ({method.kind}) ..."
                    + (f" [repeat {attempt + 1}/{repeats}]" if repeats > 1 else ""))
                load_before = os.getloadavg()[0]
                row = run_child(settings, name, method.name, raw, work, log)
                row["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                row["load_cpus"] = os.cpu_count()
                tries.setdefault(method.name, []).append(row)
                if repeats > 1 and "error" not in row:
                    log(f"    {_si(row['rows_per_s'])} {row['unit']}/s, 1-min load average "
                        f"{row['load_avg_1m'][0]} -> {row['load_avg_1m'][1]}")
                if "error" in row and method.name in ("ours", "exact"):
                    break  # nothing to compare the others with
            if any("error" in rows[-1] for m, rows in tries.items() if m in ("ours", "exact")):
                break
        for method in methods:
            if method.name not in tries:
                continue
            row = _median_row(tries[method.name])
            row.update(provenance)
            stage_rows.append(row)
            if "error" not in row:
                note = f", extrapolated from {row['extrapolated_from']:,} rows" if row.get("extrapolated_from") else ""
                log(f"  {name}/{method.name}: {row['input_rows']:,} in, {row['output_rows']:,} out, "
                    f"{row['seconds']:.3f}s, {_si(row['rows_per_s'])} {row['unit']}/s, "
                    f"peak RSS {row['peak_rss_mb']:,.0f} MB, {row['device']}, "
                    f"{row.get('processes')} process(es) x {row.get('threads')} thread(s){note}")
        if any("error" in r for r in stage_rows if r["method"] in ("ours", "exact")):
            failed.add(name)
        else:
            state["done"] = sorted(set(state.get("done", [])) | {name})
            _save_state(work, state)
        if requested:
            rows_by_stage[name] = stage_rows
            results = _results(settings, data, rows_by_stage)
            _write(json_path, json.dumps(results, indent=1, default=_json_default) + "\n")
            _write(md_path, render_markdown(results))
            for target in results["targets"]:
                if target["stage"] == name:
                    log(f"  target {target['target']}: {_fmt_value(target['value'])} -> {_verdict(target['met'])}")
    results = _results(settings, data, rows_by_stage)
    log(f"wrote {json_path} and {md_path}")
    if failed & set(settings.stages):
        log(f"failed stages: {', '.join(sorted(failed & set(settings.stages)))}")
    return results


def _median_row(rows: list[dict]) -> dict:
    """The repeat with the median rows/s (the lower middle one of an even count), with every
    repeat's rows/s and load in ``repeats``; a failed repeat is the result."""
    failed = [r for r in rows if "error" in r]
    if failed or len(rows) == 1:
        return failed[0] if failed else rows[0]
    ranked = sorted(rows, key=lambda r: r["rows_per_s"])
    row = dict(ranked[(len(ranked) - 1) // 2])
    row["repeats"] = [{"rows_per_s": r["rows_per_s"], "seconds": r["seconds"], "load_avg_1m": r.get("load_avg_1m")}
                      for r in rows]
    return row


def _write(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _results(settings: RunSettings, data: dict, rows_by_stage: dict[str, list[dict]]) -> dict:
    rows, targets, comparisons = [], [], []
    for name in STAGE_ORDER:
        stage_rows = rows_by_stage.get(name)
        if not stage_rows:
            continue
        by_method = {r["method"]: r for r in stage_rows if "error" not in r}
        for row in stage_rows:
            rows.append(row)
        for method in STAGES[name].methods:
            if method.name != "ours" and method.name in by_method and "ours" in by_method:
                comparisons.append({"stage": name, "ratio": f"ours/{method.name}", "kind": method.kind,
                                    "value": ratio(by_method, method.name)})
        targets.extend(evaluate_targets(STAGES[name], by_method))
    return {
        "schema": SCHEMA,
        "scale": settings.scale,
        "seed": settings.seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "git": _git(),
        "data": data,
        "naive_budget_seconds": settings.budget,
        "options": settings.options,
        "rows": rows,
        "comparisons": comparisons,
        "targets": targets,
    }


# --------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------


def _si(x: float | None) -> str:
    if x is None:
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _fmt_value(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return _si(x)
    return f"{x:.3g}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def _seconds(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def _cpu_text(cpu: dict) -> str:
    flags = ", ".join(cpu.get("vector_flags") or []) or "no vector flags found"
    return f"{cpu.get('model', '?')} ({flags})"


def _cpu_labels(rows: list[dict]) -> dict[str, str]:
    """A short label (A, B, ...) for each distinct CPU the rows ran on, in first-seen order
    (rows kept from an earlier subset run may come from another machine)."""
    labels: dict[str, str] = {}
    for row in rows:
        if row.get("cpu"):
            labels.setdefault(_cpu_text(row["cpu"]), chr(ord("A") + len(labels)))
    return labels


def render_markdown(results: dict) -> str:
    """The results as a markdown report: one row per (stage, method), then the targets."""
    data = results.get("data", {})
    machine = results["machine"]
    cpus = _cpu_labels(results["rows"])
    lines = [
        f"# Benchmarks: scale `{results['scale']}`, seed {results['seed']}",
        "",
        f"Run {results['created']} on {machine['cpus']} CPUs ({machine['platform']}); "
        f"Python {machine['versions']['python']}, torch {machine['versions']['torch']}, "
        f"DuckDB {machine['versions']['duckdb']}, implicit {machine['versions']['implicit']}.",
        "Data: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
                              for k, v in data.items()) + ".",
        f"Each method ran in its own subprocess (peak RSS is that process's `ru_maxrss`; for stages with worker "
        f"processes the notes add the peak of their summed PSS, sampled every second). Naive methods and the "
        f"budgeted peers (DuckDB SQL labels, sklearn KNN) ran for at "
        f"most {results['naive_budget_seconds']:g} s; rows marked *extrapolated from N rows* processed N units and "
        "their seconds are scaled linearly to the whole input. Ratios are rows/s of ours over the other method.",
        "`processes` is how many processes ran the method's kernel at once and `threads` the most threads each "
        "ran with (which library's threads: see the notes); `cpu` is the machine the row was measured on: "
        + ("; ".join(f"{label} = {text}" for text, label in cpus.items()) or "not recorded") + ".",
        "",
        "| stage | method | rate unit | input rows | output rows | seconds | rows/s | peak RSS MB | device | processes "
        "| threads | cpu | ours/naive | ours/peer | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|---|",
    ]
    by_stage: dict[str, list[dict]] = {}
    for row in results["rows"]:
        by_stage.setdefault(row["stage"], []).append(row)
    for name, rows in by_stage.items():
        ok = {r["method"]: r for r in rows if "error" not in r}
        naive = ratio(ok, "naive")
        peers = [f"{ratio(ok, m.name):.3g}× {m.name}" for m in STAGES[name].methods
                 if m.kind == "peer" and m.name in ok and "ours" in ok]
        for row in rows:
            if "error" in row:
                lines.append(f"| {name} | {row['method']} | | | | | | {row['peak_rss_mb']:,.0f} | | | | | | | "
                             f"failed: {row['error']} |")
                continue
            notes = [row["description"]]
            if row.get("threads_detail"):
                notes.append(f"threads: {row['threads_detail']}")
            if row.get("extrapolated_from"):
                notes.append(f"**extrapolated from {row['extrapolated_from']:,} rows**")
            if row.get("repeats"):
                loads = [x for r in row["repeats"] for x in (r.get("load_avg_1m") or [])]
                notes.append(f"median of {len(row['repeats'])} runs ("
                             + ", ".join(_si(r["rows_per_s"]) for r in row["repeats"]) + "/s"
                             + (f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} on "
                                f"{row.get('load_cpus') or '?'} CPUs" if loads else "") + ")")
            metrics = row.get("metrics", {})
            for key in ("mpd_mb_per_s", "mpd_mb_per_cpu_s", "recall_at_10", "liked_agreement", "hard_pool_agreement",
                        "scored_pairs_agreement", "similarity_agreement", "neighbor_agreement", "build_seconds"):
                if key in metrics:
                    notes.append(f"{key.replace('_', ' ')} {metrics[key]}")
            if isinstance(metrics.get("load_average_1m"), dict):  # what else ran on the machine meanwhile
                load = metrics["load_average_1m"]
                notes.append(f"1-min load average while timed {load['median']} (min {load['min']}, max "
                             f"{load['max']}) on {load['cpus']} CPUs")
                if "others_cpu_share" in metrics:
                    notes.append(f"other processes used {metrics['others_cpu_share']:.0%} of the CPUs meanwhile")
            tree = row.get("peak_tree_pss_mb")
            if tree and tree > 1.1 * row["peak_rss_mb"]:  # worker processes: their sum matters
                notes.append(f"processes together peaked at {tree:,.0f} MB (PSS)")
            if metrics.get("reached_recall_0_95") is False:
                notes.append("**recall@10 0.95 not reached in the sweep: QPS at the largest setting**")
            if "embeddings" in metrics and row["method"] == "exact":
                notes.append(f"embeddings: {metrics['embeddings']}")
            is_ours = row["method"] == "ours"
            lines.append(
                f"| {name} | {row['method']} | {row['unit']} | {row['input_rows']:,} | {row['output_rows']:,} | "
                f"{_seconds(row['seconds'])} | {_si(row['rows_per_s'])} | {row['peak_rss_mb']:,.0f} | {row['device']} | "
                f"{row.get('processes') or '—'} | {row.get('threads') or '—'} | "
                f"{cpus.get(_cpu_text(row['cpu']), '—') if row.get('cpu') else '—'} | "
                f"{(f'{naive:.3g}×' if naive is not None else '—') if is_ours else ''} | "
                f"{('; '.join(peers) or '—') if is_ours else ''} | {'; '.join(notes)} |")
    lines += ["", "## Targets", "", "| stage | target | measured | verdict |", "|---|---|---:|---|"]
    for target in results["targets"]:
        value = target["value"]
        shown = "—" if value is None else (f"{value:.3g}×" if target["metric"].startswith(("ratio:", "metric_ratio:"))
                                           else _fmt_value(value))
        lines.append(f"| {target['stage']} | {target['target']} | {shown} | {_verdict(target['met'])} |")
    return "\n".join(lines) + "\n"
