-- description: Playlist count per track, ranked; the most popular tracks first.
-- unique_key: track_id
-- not_null: track_id, n_playlists, popularity_rank
SELECT
    track_id,
    track_uri,
    track_name,
    artist_name,
    n_playlists,
    (row_number() OVER (ORDER BY n_playlists DESC, track_id) )::INTEGER AS popularity_rank
FROM track_dictionary
