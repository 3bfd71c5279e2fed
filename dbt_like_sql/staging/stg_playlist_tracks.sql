-- description: One row per (playlist, position); names trimmed, URIs as loaded.
-- unique_key: pid, pos
-- not_null: pid, pos, track_uri, artist_uri, album_uri
SELECT
    pid,
    pos,
    track_uri,
    trim(track_name) AS track_name,
    artist_uri,
    trim(artist_name) AS artist_name,
    album_uri,
    trim(album_name) AS album_name,
    duration_ms
FROM mpd_playlist_tracks
