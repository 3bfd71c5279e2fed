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
