-- description: MPD playlists with a whitespace-normalized, lower-case name for genre/mood inference.
-- unique_key: pid
-- not_null: pid, name, num_tracks
SELECT
    pid,
    name,
    lower(trim(regexp_replace(name, '\s+', ' ', 'g'))) AS name_normalized,
    collaborative,
    modified_at,
    num_tracks,
    num_followers,
    num_edits,
    duration_ms,
    description,
    slice
FROM mpd_playlists
