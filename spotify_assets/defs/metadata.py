"""Helpers that turn warehouse facts into asset metadata a person can read in the UI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
import duckdb
import pyarrow as pa

from spotify_assets.ingest import table_schema, transaction
from spotify_assets.step_memory import peak_rss_mb  # re-exported: the assets put it in their metadata


def table_metadata(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, dg.MetadataValue]:
    """Row count and column schema of a DuckDB table, in Dagster's standard keys."""
    n_rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in table_schema(con, table)])
    return {
        "dagster/row_count": dg.MetadataValue.int(int(n_rows)),
        "dagster/column_schema": dg.MetadataValue.table_schema(schema),
        "dagster/table_name": dg.MetadataValue.text(table),
    }


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A GitHub-style markdown table from a list of dicts (column order of the first row)."""
    if not rows:
        return "_(no rows)_"
    columns = list(rows[0].keys())

    def fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def replace_tables(con: duckdb.DuckDBPyConnection, tables: Mapping[str, pa.Table]) -> None:
    """Replace each named warehouse table with an Arrow table's rows, all in one transaction
    (readers see every old table or every new one; a failure leaves the old ones)."""
    views = {}
    for index, (name, table) in enumerate(tables.items()):
        views[name] = f"_replacement_{index}"
        con.register(views[name], table)
    try:
        with transaction(con):
            for name, view in views.items():
                con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM {view}')
    finally:
        for view in views.values():
            con.unregister(view)


def png_metadata(path, title: str) -> dg.MetadataValue:
    """A PNG file shown inline in the asset's metadata (markdown with a data URI), path below."""
    import base64
    from pathlib import Path

    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})\n\n`{path}`")
