"""Helpers for the deployment-variant tests (deploy/k8s, deploy/dask): load a definitions
file as a module, and run ``dagster definitions validate -f`` on it in a fresh interpreter."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def load_variant(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_validates(path: Path, home: Path, **env: str) -> None:
    """``dagster definitions validate -f path`` with DAGSTER_HOME=home (and ``env``) succeeds."""
    environment = {**os.environ, "DAGSTER_HOME": str(home), **env}
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f", str(path)],
                          cwd=home, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Validation successful" in done.stdout + done.stderr
