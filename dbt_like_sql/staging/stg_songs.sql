-- description: MSD songs with trimmed title/artist; songs the MSD lists as mismatched are flagged, not dropped.
-- unique_key: song_id
-- not_null: song_id
SELECT
    song_id,
    track_id,
    trim(title) AS title,
    trim(artist_name) AS artist_name,
    release,
    year,
    mismatched
FROM msd_songs
