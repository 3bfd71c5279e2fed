"""Run configuration checked before any step runs.

Dagster checks run config against each op's schema (names and types) when a run is created,
but a pythonic ``dg.Config``'s value constraints (``ge=1``, an allowed set of names) are only
applied when the op that owns it starts, possibly an hour into a run. The pipeline executor
below builds every selected op's ``dg.Config`` from the run config first and fails the run,
before the first step, with every violation listed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import dagster as dg
import pydantic
from dagster._core.definitions.executor_definition import MULTI_PROC_CONFIG, multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.multiprocess import MultiprocessExecutor


def config_class(op_def: dg.OpDefinition) -> type[dg.Config] | None:
    """The ``dg.Config`` subclass an op's function takes as ``config``, if any."""
    fn = getattr(op_def.compute_fn, "decorated_fn", None)
    if fn is None:
        return None
    param = inspect.signature(fn).parameters.get("config")  # Dagster's name for an op's config
    annotation = param.annotation if param is not None else None
    if inspect.isclass(annotation) and issubclass(annotation, dg.Config):
        return annotation
    return None


def _ops_in(graph: dg.GraphDefinition, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dg.OpDefinition]]:
    for node in graph.nodes:
        path = (*prefix, node.name)
        if isinstance(node.definition, dg.GraphDefinition):
            yield from _ops_in(node.definition, path)
        else:
            yield path, node.definition


def _op_config(run_config: dict, path: tuple[str, ...]) -> dict:
    node: object = run_config
    for name in path:
        node = ((node or {}).get("ops") or {}).get(name) if isinstance(node, dict) else None
    config = node.get("config") if isinstance(node, dict) else None
    return config if isinstance(config, dict) else {}


def config_errors(graph: dg.GraphDefinition, run_config: dict | None, only: set[str] | None = None) -> list[str]:
    """One line per invalid value: every op of ``graph`` (or the op names in ``only``) whose
    ``dg.Config`` rejects the values ``run_config`` gives it."""
    errors = []
    for path, op_def in _ops_in(graph):
        if only is not None and path[-1] not in only and path[0] not in only:
            continue
        cls = config_class(op_def)
        if cls is None:
            continue
        try:
            cls(**_op_config(run_config or {}, path))
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                errors.append(f"ops.{'.ops.'.join(path)}.config.{field}: {error['msg']} "
                              f"(got {error.get('input')!r})")
    return errors


class ValidatingMultiprocessExecutor(MultiprocessExecutor):
    """The multiprocess executor, preceded by :func:`config_errors` over the steps it will run."""

    def execute(self, plan_context, execution_plan):
        job_def = plan_context.job.get_definition()
        selected = {step.split(".")[0].split("[")[0] for step in execution_plan.step_keys_to_execute}
        errors = config_errors(job_def.graph, plan_context.run_config, only=selected)
        if errors:
            raise dg.Failure(
                description="Invalid run config, nothing was run:\n" + "\n".join(f"- {e}" for e in errors),
                metadata={"errors": dg.MetadataValue.md("\n".join(f"- `{e}`" for e in errors))},
            )
        yield from super().execute(plan_context, execution_plan)


@dg.executor(name="multiprocess", config_schema=MULTI_PROC_CONFIG,
             requirements=multiple_process_executor_requirements())
def validating_multiprocess_executor(init_context: dg.InitExecutorContext) -> ValidatingMultiprocessExecutor:
    """Dagster's multiprocess executor (same config) that validates op config values first."""
    config = init_context.executor_config
    start_method, start_cfg = None, {}
    if config.get("start_method"):
        start_method, start_cfg = next(iter(config["start_method"].items()))
    return ValidatingMultiprocessExecutor(
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
        retries=RetryMode.from_config(config["retries"]),
        start_method=start_method,
        explicit_forkserver_preload=(start_cfg or {}).get("preload_modules"),
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
    )
