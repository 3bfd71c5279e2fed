"""One dynamic partition per MPD slice file, keyed by the file name."""

import dagster as dg

mpd_slices = dg.DynamicPartitionsDefinition(name="mpd_slices")
