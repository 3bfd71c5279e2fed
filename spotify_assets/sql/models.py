"""The ``dbt_like_sql/`` project: plain ``.sql`` SELECT models turned into DuckDB tables.

Each file ``dbt_like_sql/<layer>/<name>.sql`` is one model whose table is ``<name>``. Its
dependencies are the tables its SELECT reads, found by parsing it with sqlglot (CTE names
excluded), never a hand-kept list. Optional header comments declare tests:

    -- description: one line shown in the UI
    -- unique_key: track_uri
    -- not_null: track_id, track_uri
    -- dense_id: track_id
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

from spotify_assets.ingest import transaction
from spotify_assets.resources import PROJECT_ROOT

SQL_PROJECT_DIR = PROJECT_ROOT / "dbt_like_sql"
_HEADER = re.compile(r"^--\s*(description|unique_key|not_null|dense_id)\s*:\s*(.+?)\s*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class SqlModel:
    """One SQL model: its table name, layer (folder), SELECT text, upstream tables and tests."""

    name: str
    layer: str
    path: Path
    sql: str
    upstream: tuple[str, ...]
    description: str = ""
    unique_key: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    dense_id: tuple[str, ...] = ()
    tests: dict[str, tuple[str, ...]] = field(default_factory=dict)


def upstream_tables(sql: str) -> tuple[str, ...]:
    """Tables a SELECT reads (sorted, lower-case), excluding its own CTEs and table functions."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = {
        table.name.lower()
        for table in tree.find_all(exp.Table)
        if table.name and table.name.lower() not in ctes
    }
    return tuple(sorted(tables))


def parse_model(path: Path, root: Path = SQL_PROJECT_DIR) -> SqlModel:
    name = path.stem
    if not _NAME.match(name):
        raise ValueError(f"{path}: model names must be lower_snake_case identifiers")
    text = path.read_text(encoding="utf-8")
    header: dict[str, str] = {}
    for line in text.splitlines():
        match = _HEADER.match(line.strip())
        if match:
            header[match.group(1)] = match.group(2)
    body = text.strip().rstrip(";")
    try:
        upstream = upstream_tables(body)
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"{path}: cannot parse SQL: {exc}") from exc

    def columns(key: str) -> tuple[str, ...]:
        return tuple(c.strip() for c in header.get(key, "").split(",") if c.strip())

    return SqlModel(
        name=name,
        layer=path.parent.relative_to(root).parts[0] if path.parent != root else "models",
        path=path,
        sql=body,
        upstream=upstream,
        description=header.get("description", ""),
        unique_key=columns("unique_key"),
        not_null=columns("not_null"),
        dense_id=columns("dense_id"),
    )


@cache
def discover_models(root: Path = SQL_PROJECT_DIR) -> tuple[SqlModel, ...]:
    """Every ``*.sql`` under ``root``, sorted by path; names must be unique."""
    models = tuple(parse_model(path, root) for path in sorted(root.rglob("*.sql")))
    names = [m.name for m in models]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate SQL model names in {root}: {sorted(duplicates)}")
    return models


@dataclass(frozen=True)
class ModelRun:
    rows: int
    seconds: float


def materialize_model(con: duckdb.DuckDBPyConnection, model: SqlModel) -> ModelRun:
    """Replace the model's table with its SELECT inside one transaction."""
    started = time.perf_counter()
    with transaction(con):
        con.execute(f'CREATE OR REPLACE TABLE "{model.name}" AS {model.sql}')
        rows = con.execute(f'SELECT count(*) FROM "{model.name}"').fetchall()[0][0]
    return ModelRun(rows=int(rows), seconds=time.perf_counter() - started)
