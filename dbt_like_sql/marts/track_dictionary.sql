-- description: Track URI -> dense int id (ordered by URI), with a representative name and the track's playlist count.
-- unique_key: track_uri
-- not_null: track_id, track_uri, artist_uri, album_uri
-- dense_id: track_id
SELECT
    (row_number() OVER (ORDER BY track_uri) - 1)::INTEGER AS track_id,
    track_uri,
    min(track_name) AS track_name,
    min(artist_uri) AS artist_uri,
    min(artist_name) AS artist_name,
    min(album_uri) AS album_uri,
    count(DISTINCT pid)::INTEGER AS n_playlists
FROM stg_playlist_tracks
GROUP BY track_uri
