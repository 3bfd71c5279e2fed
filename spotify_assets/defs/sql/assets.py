"""A small factory: every ``dbt_like_sql/**/*.sql`` model becomes a DuckDB-table asset.

Dependencies come from the tables each model's SELECT reads; the model's header comments
become blocking, in-step asset checks (unique keys, non-null columns, dense id ranges).
"""


import hashlib

import dagster as dg

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets import checks
from spotify_assets.defs.metadata import table_metadata
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, DuckDBWarehouse
from spotify_assets.sql.models import SqlModel, discover_models, materialize_model


def _check_specs(model: SqlModel) -> list[dg.AssetCheckSpec]:
    specs = []
    if model.unique_key:
        specs.append(dg.AssetCheckSpec("unique_key", asset=model.name, blocking=True,
                                       description=f"No duplicate ({', '.join(model.unique_key)})."))
    if model.not_null:
        specs.append(dg.AssetCheckSpec("not_null", asset=model.name, blocking=True,
                                       description=f"No NULLs in {', '.join(model.not_null)}."))
    for column in model.dense_id:
        specs.append(dg.AssetCheckSpec(f"dense_{column}", asset=model.name, blocking=True,
                                       description=f"{column} takes each value 0..n-1 exactly once."))
    return specs


def _run_checks(con, model: SqlModel) -> list[dg.AssetCheckResult]:
    verdicts: list[tuple[str, checks.Verdict]] = []
    if model.unique_key:
        verdicts.append(("unique_key", checks.unique_key(con, model.name, list(model.unique_key))))
    if model.not_null:
        verdicts.append(("not_null", checks.not_null(con, model.name, list(model.not_null))))
    for column in model.dense_id:
        verdicts.append((f"dense_{column}", checks.dense_id(con, model.name, column)))
    return [
        dg.AssetCheckResult(check_name=name, passed=v.passed, description=v.description, metadata=dict(v.details))
        for name, v in verdicts
    ]


def build_sql_asset(model: SqlModel) -> dg.AssetsDefinition:
    @dg.asset(
        name=model.name,
        group_name=model.layer,
        deps=[dg.AssetKey(table) for table in model.upstream],
        description=model.description or f"SQL model {model.layer}/{model.name}.sql",
        kinds={"duckdb", "sql"},
        check_specs=_check_specs(model),
        op_tags=DUCKDB_OP_TAGS,
        pool=DUCKDB_POOL,
        code_version=hashlib.sha1(model.sql.encode()).hexdigest()[:12],
        metadata={"sql": dg.MetadataValue.md(f"```sql\n{model.sql}\n```"), "path": dg.MetadataValue.path(str(model.path))},
        automation_condition=EAGER_WHEN_CHECKS_PASS,
    )
    def _sql_model(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            run = materialize_model(con, model)
            metadata = table_metadata(con, model.name)
            results = _run_checks(con, model)
        context.log.info(f"{model.name}: {run.rows:,} rows in {run.seconds:.2f}s")
        return dg.MaterializeResult(
            metadata={**metadata, "seconds": dg.MetadataValue.float(round(run.seconds, 3))},
            check_results=results,
        )

    return _sql_model


sql_model_assets = [build_sql_asset(model) for model in discover_models()]
