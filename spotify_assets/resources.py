"""Dagster resources: the DuckDB warehouse, artifact storage and raw-input locations.

All paths come from configuration (environment variables in ``defs/resources.py``), never
from module globals, so tests point the whole graph at a temporary folder.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
from pydantic import Field

from spotify_assets.atomic import fsync_dir, remove_stale_temps

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Ops tagged with this key touch the DuckDB file. DuckDB lets one process write (or
# several read) a database file at a time, so the jobs' executors cap these ops at one
# concurrently (see defs/jobs.py); the connect retry below covers other processes.
DUCKDB_OP_TAGS = {"spotify_assets/duckdb": "warehouse"}
DUCKDB_POOL = "duckdb_warehouse"


def default_data_dir() -> Path:
    """``$SPOTIFY_ASSETS_DATA_DIR`` or ``<project>/data``."""
    return Path(os.environ.get("SPOTIFY_ASSETS_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


class DuckDBWarehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file every SQL model and loader writes into."""

    database: str = Field(description="Path of the DuckDB database file.")
    lock_timeout_seconds: float = Field(
        default=300.0,
        description="How long to wait for another process's lock on the file before failing.",
    )
    threads: int | None = Field(default=None, description="DuckDB worker threads (default: all cores).")
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit, e.g. '8GB'.")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the warehouse, waiting (with jittered backoff) while another process holds it."""
        path = Path(self.database)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            if self.memory_limit:
                con.execute("SET memory_limit = ?", [self.memory_limit])
            yield con
        finally:
            con.close()


class RawInputs(dg.ConfigurableResource):
    """Where the raw public datasets live. Point these at the real MPD/ENTP/MSD files."""

    mpd_dir: str = Field(description="Folder with mpd.slice.<start>-<end>.json[.gz] files.")
    entp_triplets: str = Field(description="ENTP train_triplets.txt[.gz].")
    msd_dir: str = Field(description="Folder with unique_tracks.txt, song_data.csv, sid_mismatches.txt.")
    max_slice_bytes: int = Field(
        default=512 * 1024 * 1024, description="Reject MPD slice files larger than this many bytes."
    )
    mpd_load_threads: int = Field(
        default=0, ge=0, description="Slices parsed at once (DuckDB parses one JSON file on one thread); 0 = one per core."
    )

    def msd_file(self, *names: str) -> Path | None:
        """The first of ``names`` that exists in ``msd_dir`` (plain or .gz), else None."""
        for name in names:
            for candidate in (Path(self.msd_dir) / name, Path(self.msd_dir) / f"{name}.gz"):
                if candidate.exists():
                    return candidate
        return None


class ArtifactStore(dg.ConfigurableResource):
    """Local folder for binary artifacts (matrices, tensors, checkpoints, indexes).

    Writes go to a temporary name in the same folder and are renamed into place, so a
    reader sees the previous complete file or the new complete file, never a torn one.
    """

    root: str = Field(description="Folder that holds artifacts.")

    def path(self, *parts: str) -> Path:
        target = Path(self.root).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    @contextmanager
    def atomic_path(self, *parts: str) -> Iterator[Path]:
        """Yield a temporary path; on success it replaces ``path(*parts)`` atomically."""
        target = self.path(*parts)
        remove_stale_temps(target)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            fsync_dir(target.parent)
        finally:
            if tmp.exists():
                tmp.unlink()

    def save_arrays(self, *parts: str, **arrays: np.ndarray) -> Path:
        """Write ``arrays`` as an uncompressed .npz atomically; return the final path."""
        with self.atomic_path(*parts) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        return self.path(*parts)

    def load_arrays(self, *parts: str) -> dict[str, np.ndarray]:
        """Read an .npz written by :meth:`save_arrays` (pickle disabled)."""
        target = Path(self.root).joinpath(*parts)
        if not target.exists():
            raise FileNotFoundError(f"artifact {target} is missing: materialize its asset first")
        with np.load(target, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


class FeedbackStore(dg.ConfigurableResource):
    """The service's feedback log (SQLite, see ``serving/feedback.py`` for why not DuckDB).

    The pipeline only reads it: ``feedback_positives`` turns rows into training positives and
    ``feedback_retrain_sensor`` counts new rows against ``retrain_threshold``.
    """

    path: str = Field(description="SQLite file the HTTP service appends feedback to.")
    retrain_threshold: int = Field(default=25, ge=1,
                                   description="New feedback rows that trigger a retrain run.")

    def log(self):
        from spotify_assets.serving.feedback import FeedbackLog

        return FeedbackLog(self.path)


class PipelineSettings(dg.ConfigurableResource):
    """Settings every stage shares; change them in the launchpad's resources section."""

    seed: int = Field(default=0, description="Drives every random draw (downscale, splits, sampling, init).")
    downscale: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Share of users kept (seeded), as in the original system."
    )


class JsonIOManager(dg.ConfigurableIOManager):
    """Passes small JSON values (paths, ranges, counts) between ops of one run.

    Big arrays never travel through an IO manager here: ops write artifacts themselves
    and hand over their paths. JSON instead of the default pickle keeps every file the
    platform reads free of pickle.
    """

    root: str = Field(description="Folder for the per-run JSON values.")

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        identifier = "__".join(context.get_identifier())
        return Path(self.root) / f"{identifier}.json"

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        # per-process temp name: two processes writing one output never share a temp file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        remove_stale_temps(path)
        try:
            tmp.write_text(json.dumps(obj, sort_keys=True))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_input(self, context: dg.InputContext) -> object:
        return json.loads(self._path(context.upstream_output).read_text())


class ExperimentTracker(dg.ConfigurableResource):
    """Weights & Biases, offline by default: runs are written under ``dir`` (sync them later
    with ``wandb sync``); online only when ``mode='online'`` and ``WANDB_API_KEY`` is set in
    the environment. The key is never read into config, logs or metadata."""

    project: str = Field(default="spotify_assets", description="wandb project name.")
    mode: str = Field(default="offline", description="'offline', 'online' or 'disabled'.")
    dir: str = Field(description="Folder for offline runs.")

    def effective_mode(self) -> str:
        mode = os.environ.get("WANDB_MODE", self.mode)
        if mode == "online" and not os.environ.get("WANDB_API_KEY"):
            return "offline"  # no credentials: never try the network
        return mode if mode in ("offline", "online", "disabled") else "offline"

    @contextmanager
    def run(self, name: str, config: dict, group: str | None = None) -> Iterator["TrackedRun"]:
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=self.project, name=name, group=group, config=config, dir=self.dir,
            mode=self.effective_mode(), reinit="finish_previous",
            settings=wandb.Settings(silent=True, x_disable_stats=True, console="off"),
        )
        tracked = TrackedRun(run)
        try:
            yield tracked
        finally:
            run.finish()


class TrackedRun:
    """A thin handle on one wandb run: log rows, set summary values, report where it lives."""

    def __init__(self, run):
        self._run = run

    def log(self, row: dict) -> None:
        self._run.log(row)

    def summary(self, **values: float) -> None:
        for key, value in values.items():
            self._run.summary[key] = value

    @property
    def location(self) -> str:
        """``entity/project/run_id`` online; the local run folder offline."""
        if getattr(self._run, "offline", False) or self._run.settings.mode == "offline":
            return str(Path(self._run.dir).parent)
        return "/".join(self._run.path) if isinstance(self._run.path, list | tuple) else str(self._run.path)
