"""Where the project's files are: one resolver for the pipeline, the service and the CLIs.

No Dagster here: the HTTP service and the command lines import this module, and the
pipeline's resources (``defs/resources.py``) build their paths from the same functions, so a
moved artifacts store moves for everyone.

* ``SPOTIFY_ASSETS_DATA_DIR`` (default ``<project>/data``): raw inputs, warehouse, artifacts.
* ``SPOTIFY_ASSETS_ARTIFACTS`` (default ``<data dir>/artifacts``): the artifacts store, a
  folder or an fsspec URL such as ``s3://bucket/spotify_assets``.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$SPOTIFY_ASSETS_DATA_DIR`` or ``<project>/data``."""
    return Path(os.environ.get("SPOTIFY_ASSETS_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def is_url(root: str) -> bool:
    """True for an fsspec URL (``s3://bucket/x``, ``memory://x``, ``file:///x``), False for a
    plain local folder (including Windows drive letters)."""
    scheme, sep, _ = root.partition("://")
    return bool(sep) and len(scheme) > 1


def artifacts_root(data_dir: Path | str | None = None) -> str:
    """``$SPOTIFY_ASSETS_ARTIFACTS``, else ``<data_dir>/artifacts`` (``data_dir`` defaults to
    :func:`default_data_dir`): a local folder or an fsspec URL."""
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    return os.environ.get("SPOTIFY_ASSETS_ARTIFACTS", str(data / "artifacts"))


def local_artifacts_dir(data_dir: Path | str | None = None) -> Path:
    """:func:`artifacts_root` as a local folder, for readers of whole files (the service, the CLIs).

    Raises ValueError for a URL root: those readers open files in place, so they need a local
    copy (point ``SPOTIFY_ASSETS_ARTIFACTS`` at it when starting them).
    """
    root = artifacts_root(data_dir)
    if is_url(root):
        raise ValueError(f"SPOTIFY_ASSETS_ARTIFACTS is the URL {root!r}, but this command reads a local folder: "
                         "start it with SPOTIFY_ASSETS_ARTIFACTS set to a local copy of the store "
                         "(e.g. the pipeline's SPOTIFY_ASSETS_ARTIFACT_CACHE)")
    return Path(root).resolve()
