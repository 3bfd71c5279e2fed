-- description: Playlist tracks as dense ints (pid, pos, track_id, artist_id, album_id): what a next-track model reads.
-- unique_key: pid, pos
-- not_null: pid, pos, track_id, artist_id, album_id
SELECT
    t.pid,
    t.pos,
    d.track_id,
    a.artist_id,
    b.album_id
FROM stg_playlist_tracks AS t
JOIN track_dictionary AS d ON d.track_uri = t.track_uri
JOIN artist_dictionary AS a ON a.artist_uri = t.artist_uri
JOIN album_dictionary AS b ON b.album_uri = t.album_uri
ORDER BY t.pid, t.pos
