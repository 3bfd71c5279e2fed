"""Watch the MPD folder: every new (or rewritten) slice file becomes a partition and a run."""


import json
import os
from pathlib import Path

import dagster as dg

from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import RawInputs


def slice_signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@dg.sensor(
    asset_selection=dg.AssetSelection.assets("mpd_playlists", "mpd_playlist_tracks"),
    # How often the daemon looks at the folder; tests shorten it.
    minimum_interval_seconds=int(os.environ.get("SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS", "30")),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def mpd_slice_sensor(context: dg.SensorEvaluationContext, raw_inputs: RawInputs) -> dg.SensorResult:
    """Adds a dynamic partition and requests a load for each new or changed slice file.

    The cursor maps file name -> size:mtime, so each version of a file is requested once;
    the run key repeats that signature so a re-evaluated tick cannot launch it twice.
    """
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = {path.name: slice_signature(path) for path in list_mpd_slices(Path(raw_inputs.mpd_dir))}
    changed = [name for name, signature in current.items() if seen.get(name) != signature]
    if not changed:
        return dg.SensorResult(skip_reason=f"no new slices among {len(current)} files")
    known = set(context.instance.get_dynamic_partitions(mpd_slices.name))
    new_partitions = [name for name in changed if name not in known]
    context.log.info(f"{len(changed)} new or changed slices ({len(new_partitions)} new partitions)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=f"{name}@{current[name]}") for name in changed],
        dynamic_partitions_requests=[mpd_slices.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(current, sort_keys=True),
    )
