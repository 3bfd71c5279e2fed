"""Deployment variants (``deploy/k8s``, ``deploy/dask``): the local code location's
definitions with every job moved onto another executor, no Dagster graph forked."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def job_on(job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
           executor: dg.ExecutorDefinition) -> dg.UnresolvedAssetJobDefinition | dg.JobDefinition:
    """The same job on ``executor``: an asset job keeps its name, selection, description, tags,
    config, partitions and hooks; an op job (``simulate_users``) keeps its graph and everything else."""
    if isinstance(job, dg.JobDefinition):
        return job.with_executor_def(executor)
    return dg.define_asset_job(name=job.name, selection=job.selection, description=job.description, tags=job.tags,
                               run_tags=job.run_tags, config=job.config, partitions_def=job.partitions_def,
                               metadata=job.metadata, executor_def=executor, hooks=job.hooks)


def with_executor(base: dg.Definitions, executor: dg.ExecutorDefinition,
                  assets: Sequence | None = None) -> dg.Definitions:
    """``base`` with every job on ``executor`` (also the default executor), the schedules and
    sensors pointed at the moved jobs, and ``assets`` instead of base's when given."""
    jobs: dict[str, dg.UnresolvedAssetJobDefinition | dg.JobDefinition] = {}
    for job in base.jobs or []:
        jobs.setdefault(job.name, job_on(job, executor))
    schedules = [s.with_updated_job(jobs[s.job_name]) if s.has_job and s.job_name in jobs else s
                 for s in base.schedules or []]
    sensors = []
    for sensor in base.sensors or []:
        targets = [jobs[j.name] for j in sensor.jobs if j.name in jobs] if sensor.has_jobs else []
        sensors.append(sensor.with_updated_jobs(targets) if targets else sensor)
    return dg.Definitions(
        assets=base.assets if assets is None else assets,
        asset_checks=base.asset_checks,
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources=base.resources,
        loggers=base.loggers,
        executor=executor,
    )
