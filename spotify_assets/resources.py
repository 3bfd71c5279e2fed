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
import scipy.sparse as sp
from pydantic import Field

from spotify_assets.atomic import atomic_write
from spotify_assets.contract import Artifact, load_npz
from spotify_assets.paths import PROJECT_ROOT, default_data_dir  # re-exported: CLIs and tests import them from here
from spotify_assets.paths import is_url as _is_url

# Ops tagged with this key touch the DuckDB file. DuckDB lets one process write (or
# several read) a database file at a time, so the jobs' executors cap these ops at one
# concurrently (see defs/jobs.py); the connect retry below covers other processes.
DUCKDB_OP_TAGS = {"spotify_assets/duckdb": "warehouse"}
DUCKDB_POOL = "duckdb_warehouse"


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
        default=512 * 1024 * 1024,
        description="Reject MPD slice files larger than this many bytes, on disk or (gzip) after decompression."
    )
    mpd_load_threads: int = Field(
        default=0, ge=0, description="Worker processes that parse and validate MPD slices at once (one writer appends "
                                 "them); 0 = one per core."
    )
    allow_external_symlinks: bool = Field(
        default=False,
        description="Follow a raw file that is a symlink out of its folder (refused by default: a link dropped "
                    "into the watched MPD folder must not make the loaders read elsewhere on disk).",
    )

    def msd_file(self, *names: str) -> Path | None:
        """The first of ``names`` that exists in ``msd_dir`` (plain or .gz), else None."""
        for name in names:
            for candidate in (Path(self.msd_dir) / name, Path(self.msd_dir) / f"{name}.gz"):
                if candidate.exists():
                    return candidate
        return None


class ArtifactStore(dg.ConfigurableResource):
    """Binary artifacts (matrices, tensors, checkpoints, indexes) in a local folder or at
    an fsspec URL.

    Local ``root``: writes go to a temporary name in the same folder and are renamed into
    place, so a reader sees the previous complete file or the new complete file, never a
    torn one.

    URL ``root`` (``s3://bucket/prefix``, ``gs://...``, ``file:///shared/artifacts``,
    ``memory://...``; the protocol's fsspec package must be installed, e.g. ``s3fs``): the
    store is the truth and a local folder (``cache_dir``) is a cache. Writers write the
    local file atomically as above, then upload it (:meth:`publish`; object stores replace
    an object in one PUT, a ``file://`` target is written to a temporary key and renamed).
    :meth:`path` hands out a local copy, downloaded when the cache misses or the remote
    object changed (size / mtime / ETag differ from what was cached), so steps on different
    machines of a Dask or Kubernetes cluster see each other's outputs.
    """

    root: str = Field(description="Folder or fsspec URL that holds artifacts.")
    cache_dir: str | None = Field(
        default=None,
        description="Local cache for a URL root (default: <tmp>/spotify_assets_artifacts/<hash of root>). "
                    "Ignored for a local root.")

    # -- where things are ---------------------------------------------------------------

    @property
    def is_remote(self) -> bool:
        return _is_url(self.root)

    def _filesystem(self):
        import fsspec

        fs, base = fsspec.core.url_to_fs(self.root)
        return fs, base.rstrip("/")

    def local_root(self) -> Path:
        """The local folder that mirrors the store (the root itself for a local root)."""
        if not self.is_remote:
            return Path(self.root)
        if self.cache_dir:
            return Path(self.cache_dir)
        import hashlib
        import tempfile

        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "spotify_assets_artifacts" / digest

    def _remote_key(self, *parts: str) -> str:
        fs, base = self._filesystem()
        return "/".join([base, *parts])

    def url(self, *parts: str) -> str:
        """Where an artifact lives: the local path, or its URL for a URL root (for metadata)."""
        if not self.is_remote:
            return str(Path(self.root).joinpath(*parts))
        return "/".join([self.root.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        if not self.is_remote:
            return Path(self.root).joinpath(*parts).exists()
        fs, _ = self._filesystem()
        return fs.exists(self._remote_key(*parts))

    @staticmethod
    def _signature(info: dict) -> str:
        keys = ("size", "mtime", "created", "ETag", "etag", "LastModified", "md5Hash", "generation")
        return json.dumps({k: str(info[k]) for k in keys if k in info}, sort_keys=True)

    def path(self, *parts: str) -> Path:
        """A local path for ``parts`` (its folder created). For a URL root, the remote object
        is downloaded first when the cached copy is missing or out of date; when there is no
        remote object the path is where a writer should put it (then :meth:`publish`)."""
        target = self.local_root().joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.is_remote:
            self._fetch(target, *parts)
        return target

    def _fetch(self, target: Path, *parts: str) -> bool:
        """Bring the remote object ``parts`` to ``target`` unless the cached copy is current;
        False when there is no such object (one ``info`` call either way)."""
        fs, _ = self._filesystem()
        key = self._remote_key(*parts)
        try:
            info = fs.info(key)
        except FileNotFoundError:
            return False
        if info.get("type") == "directory":
            return False
        signature = self._signature(info)
        stamp = target.with_name(f".{target.name}.remote")
        if target.exists() and stamp.exists() and stamp.read_text() == signature:
            return True
        with atomic_write(target) as tmp:
            fs.get_file(key, str(tmp))
        stamp.write_text(signature)
        return True

    def publish(self, *parts: str) -> str:
        """Upload the local file ``path(*parts)`` to a URL root (no-op for a local root);
        return where it now lives. Call it after writing a file through :meth:`path`
        (:meth:`atomic_path` and :meth:`save_arrays` call it themselves)."""
        local = self.local_root().joinpath(*parts)
        if not self.is_remote:
            return str(local)
        fs, _ = self._filesystem()
        key = self._remote_key(*parts)
        parent = key.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols:
            # a shared POSIX folder: temp key + rename, like a local write
            tmp_key = f"{parent}/.{key.rsplit('/', 1)[1]}.{os.getpid()}.tmp"
            fs.put_file(str(local), tmp_key)
            fs.mv(tmp_key, key)
        else:
            fs.put_file(str(local), key)  # one PUT: readers see the old or the new object
        local.with_name(f".{local.name}.remote").write_text(self._signature(fs.info(key)))
        return self.url(*parts)

    def sync_down(self, *prefix: str) -> Path:
        """Download every object under ``prefix`` (changed ones only) and return the local
        folder that mirrors it; for a local root, just the folder. For readers of whole
        folders (the serving bundle, the track embeddings)."""
        if self.is_remote:
            fs, root = self._filesystem()
            base = self._remote_key(*prefix)
            if fs.exists(base):
                for key in fs.find(base):
                    relative = key[len(root) + 1:] if root else key
                    self.path(*relative.split("/"))
        folder = self.local_root().joinpath(*prefix)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- writing and reading ------------------------------------------------------------

    @contextmanager
    def atomic_path(self, *parts: str) -> Iterator[Path]:
        """Yield a temporary path; on success it replaces ``path(*parts)`` atomically (and
        is uploaded for a URL root). A thin wrapper of :func:`spotify_assets.atomic.atomic_write`."""
        with atomic_write(self.local_root().joinpath(*parts)) as tmp:
            yield tmp
        self.publish(*parts)

    def save_arrays(self, *parts: str, **arrays: np.ndarray) -> Path:
        """Write ``arrays`` as an uncompressed .npz atomically; return the local path."""
        with self.atomic_path(*parts) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        return self.local_root().joinpath(*parts)

    def load_arrays(self, *parts: str, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Read an .npz written by :meth:`save_arrays` (pickle disabled): every array, or
        only ``names`` (the others are never read: at full scale labels.npz holds ~6 GB of
        which a step may need a third)."""
        target = self.local_root().joinpath(*parts)
        if self.is_remote and not self._fetch(target, *parts):  # a stale cached copy is not the artifact
            raise FileNotFoundError(f"artifact {self.url(*parts)} is missing: materialize its asset first")
        return load_npz(target, names, where=self.url(*parts))

    # -- the stage contract (spotify_assets.contract) -----------------------------------

    def read(self, artifact: Artifact, *names: str, piece: str | None = None) -> dict[str, np.ndarray]:
        """The arrays ``names`` of a declared ``.npz`` artifact (all stored ones when none is
        named), and only those: the others are never read from disk."""
        if artifact.format != "npz":
            raise ValueError(f"{'/'.join(artifact.path)} is a {artifact.format} file, not named arrays")
        artifact.check_names(names)
        parts = artifact.piece(piece) if piece is not None else artifact.path
        return self.load_arrays(*parts, names=names or None)

    def read_csr(self, artifact: Artifact) -> sp.csr_matrix:
        """A declared CSR artifact (the prepare matrices)."""
        from spotify_assets.prepare.matrices import load_csr

        if artifact.format != "csr":
            raise ValueError(f"{'/'.join(artifact.path)} is a {artifact.format} file, not a CSR matrix")
        return load_csr(self.file(artifact))

    def write(self, artifact: Artifact, piece: str | None = None, **arrays: np.ndarray) -> Path:
        """Write a declared ``.npz`` artifact atomically after checking ``arrays`` against the
        declaration (every declared array, nothing undeclared, the declared dtypes)."""
        artifact.check_arrays(arrays)
        return self.save_arrays(*(artifact.piece(piece) if piece is not None else artifact.path), **arrays)

    def file(self, artifact: Artifact, piece: str | None = None) -> Path:
        """A local path of a declared artifact (downloaded from a URL root when needed)."""
        return self.path(*(artifact.piece(piece) if piece is not None else artifact.path))

    def writing(self, artifact: Artifact, piece: str | None = None):
        """:meth:`atomic_path` for a declared artifact: write the temporary path it yields."""
        return self.atomic_path(*(artifact.piece(piece) if piece is not None else artifact.path))

    def has(self, artifact: Artifact, piece: str | None = None) -> bool:
        return self.exists(*(artifact.piece(piece) if piece is not None else artifact.path))


class FeedbackStore(dg.ConfigurableResource):
    """The service's feedback log (SQLite, see ``feedback/log.py`` for why not DuckDB).

    The pipeline only reads it: ``feedback_positives`` turns rows into training positives and
    ``feedback_retrain_sensor`` counts new rows against ``retrain_threshold``.
    """

    path: str = Field(description="SQLite file the HTTP service appends feedback to.")
    retrain_threshold: int = Field(default=25, ge=1,
                                   description="New feedback rows that trigger a retrain run.")

    def log(self):
        from spotify_assets.feedback import FeedbackLog

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
    platform reads free of pickle. ``root`` may be an fsspec URL (steps on several machines).
    """

    root: str = Field(description="Folder or fsspec URL for the per-run JSON values.")

    def _url(self, context: dg.OutputContext | dg.InputContext) -> str:
        """Where an output lives: a URL for a URL root, else a local path."""
        return f"{self.root.rstrip('/')}/{'__'.join(context.get_identifier())}.json"

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        return Path(self._url(context))

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if _is_url(self.root):
            import fsspec

            # one small object in one write (one PUT on an object store); its reader is a later step
            with fsspec.open(self._url(context), "w", auto_mkdir=True) as handle:
                handle.write(json.dumps(obj, sort_keys=True))
            return
        # per-process temp name: two processes writing one output never share a temp file
        with atomic_write(self._path(context)) as tmp:
            tmp.write_text(json.dumps(obj, sort_keys=True))

    def load_input(self, context: dg.InputContext) -> object:
        if _is_url(self.root):
            import fsspec

            with fsspec.open(self._url(context.upstream_output), "r") as handle:
                return json.loads(handle.read())
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
