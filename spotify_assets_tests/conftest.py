"""Shared fixtures: `tiny` generated data (seconds to make) and per-test warehouses."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from spotify_assets.synth import generate


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only `tiny` dataset (seed 0) in the raw layout: mpd/, entp/, msd/, truth/."""
    out = tmp_path_factory.mktemp("tiny_raw")
    generate(out, scale="tiny", seed=0)
    return out


@pytest.fixture()
def data_dir(tiny_raw: Path, tmp_path: Path) -> Path:
    """A private data folder (raw/ copied from `tiny_raw`) that a test may modify."""
    data = tmp_path / "data"
    shutil.copytree(tiny_raw, data / "raw")
    return data


@pytest.fixture()
def con(tmp_path: Path):
    """A fresh DuckDB warehouse file."""
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def snapshot(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    """Every row of ``table`` in a stable order (for before/after comparisons)."""
    return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()


@pytest.fixture(autouse=True)
def no_leftover_defs_state_storage():
    """Dagster keeps the current instance's defs-state storage in a ContextVar that a test can
    leave set (an instance used in another async/thread context is not reset); once that
    instance is gone, the next ``dg.materialize`` fails with "Attempted to resolve undefined
    DagsterInstance weakref" (seen in ``make test-fast``'s order, not in ``make test``'s). Each
    test starts with none set, as a fresh process does."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
