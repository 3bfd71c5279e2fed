"""Watch the MPD folder: a slice file whose content the warehouse does not hold becomes a
partition and a load run."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import duckdb

from spotify_assets.automation import SLICE_SENSOR_NAME, describe_runs, runs_in_flight
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.ingest import SliceFingerprint, file_sha256, list_mpd_slices, slice_fingerprints
from spotify_assets.resources import DuckDBWarehouse, RawInputs

# Hashing a real 33 MB slice takes ~0.05 s; a folder of 1,000 freshly copied slices (new
# mtimes) is hashed over several ticks rather than past the sensor's 60 s deadline.
HASH_SECONDS_PER_TICK = 20.0
# The sensor only reads the warehouse; when a run holds its lock it tries again next tick.
WAREHOUSE_WAIT_SECONDS = 2.0


def held_fingerprints(warehouse: DuckDBWarehouse) -> dict[str, SliceFingerprint]:
    """What the warehouse holds for each slice (``mpd_slice_files``), read without writing;
    raises ``duckdb.Error`` when another process holds the file for longer than a moment."""
    if not Path(warehouse.database).exists():
        return {}
    quick = DuckDBWarehouse(database=warehouse.database, lock_timeout_seconds=WAREHOUSE_WAIT_SECONDS)
    with quick.connect(read_only=True) as con:
        return slice_fingerprints(con)


def _encode(fingerprints: dict[str, SliceFingerprint]) -> str:
    return json.dumps({name: [fp.bytes, fp.mtime_ns, fp.sha256] for name, fp in sorted(fingerprints.items())})


def _decode(cursor: str | None) -> dict[str, SliceFingerprint]:
    try:
        entries = json.loads(cursor) if cursor else {}
        return {name: SliceFingerprint(int(size), int(mtime), str(sha)) for name, (size, mtime, sha) in entries.items()}
    except (ValueError, TypeError):
        return {}  # a cursor from an older version: the warehouse decides


@dg.sensor(
    name=SLICE_SENSOR_NAME,
    asset_selection=dg.AssetSelection.assets("mpd_playlists", "mpd_playlist_tracks"),
    # How often the daemon looks at the folder; tests shorten it.
    minimum_interval_seconds=int(os.environ.get("SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS", "30")),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def mpd_slice_sensor(context: dg.SensorEvaluationContext, raw_inputs: RawInputs,
                     warehouse: DuckDBWarehouse) -> dg.SensorResult:
    """Requests a load of each slice file whose content the warehouse does not already hold.

    A file is held when ``mpd_slice_files`` (written with the slice's rows) records its size
    and mtime, or, failing that, its SHA-256: a fresh ``DAGSTER_HOME`` or a reset cursor in
    front of a loaded warehouse requests nothing, and a copied or touched file with the same
    bytes is not reloaded. The cursor only caches what was already decided (file name ->
    size, mtime, SHA-256 held or requested), so unchanged files cost a ``stat`` per tick.
    The run key repeats name, hash and mtime, so one version of a file is requested once.
    New files wait while a pipeline run other than a slice load is in flight: a chain of
    derived assets never sees a slice arrive half-way through.
    """
    files = list_mpd_slices(Path(raw_inputs.mpd_dir))
    decided = _decode(context.cursor)
    undecided = [path for path in files if path.name not in decided or not decided[path.name].same_stat(path)]
    if not undecided:
        return dg.SensorResult(skip_reason=f"no new slices among {len(files)} files")
    busy = runs_in_flight(context.instance, except_slice_loads=True)
    if busy:
        return dg.SensorResult(skip_reason=f"{len(undecided)} new or changed slice files wait until "
                                           f"{describe_runs(busy)} finish")
    try:
        held = held_fingerprints(warehouse)
    except duckdb.Error as exc:
        return dg.SensorResult(skip_reason=f"the warehouse is busy ({str(exc).splitlines()[0]}); trying next tick")

    requests: list[dg.RunRequest] = []
    deferred = 0
    deadline = time.monotonic() + HASH_SECONDS_PER_TICK
    for path in undecided:
        recorded = held.get(path.name)
        if recorded is not None and recorded.same_stat(path):
            decided[path.name] = recorded
            continue
        if time.monotonic() > deadline:
            deferred += 1
            continue
        stat = path.stat()
        current = SliceFingerprint(stat.st_size, stat.st_mtime_ns, file_sha256(path))
        decided[path.name] = current
        if recorded is not None and recorded.sha256 == current.sha256:
            continue  # the same bytes under a new mtime (touched or copied): already held
        requests.append(dg.RunRequest(partition_key=path.name,
                                      run_key=f"{path.name}@{current.sha256[:16]}@{current.mtime_ns}"))
    names = {path.name for path in files}
    decided = {name: fp for name, fp in decided.items() if name in names}
    registered = set(context.instance.get_dynamic_partitions(mpd_slices.name))
    new_partitions = [path.name for path in files if path.name not in registered]
    held_count = len(undecided) - len(requests) - deferred
    summary = (f"{len(requests)} slices to load, {held_count} already held by the warehouse"
               + (f", {deferred} left to hash next tick" if deferred else ""))
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests or None,
        dynamic_partitions_requests=[mpd_slices.build_add_request(new_partitions)] if new_partitions else [],
        cursor=_encode(decided),
        skip_reason=None if requests else summary,
    )
