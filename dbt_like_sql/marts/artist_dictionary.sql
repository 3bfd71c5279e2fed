-- description: Artist URI -> dense int id (ordered by URI), with a representative name and counts.
-- unique_key: artist_uri
-- not_null: artist_id, artist_uri
-- dense_id: artist_id
SELECT
    (row_number() OVER (ORDER BY artist_uri) - 1)::INTEGER AS artist_id,
    artist_uri,
    min(artist_name) AS artist_name,
    count(DISTINCT track_uri)::INTEGER AS n_tracks,
    count(DISTINCT pid)::INTEGER AS n_playlists
FROM stg_playlist_tracks
GROUP BY artist_uri
