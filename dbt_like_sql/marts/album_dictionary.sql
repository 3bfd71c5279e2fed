-- description: Album URI -> dense int id (ordered by URI), with a representative name and its artist.
-- unique_key: album_uri
-- not_null: album_id, album_uri
-- dense_id: album_id
SELECT
    (row_number() OVER (ORDER BY album_uri) - 1)::INTEGER AS album_id,
    album_uri,
    min(album_name) AS album_name,
    min(artist_uri) AS artist_uri,
    count(DISTINCT track_uri)::INTEGER AS n_tracks
FROM stg_playlist_tracks
GROUP BY album_uri
