-- description: ENTP listens, one row per (user, song); duplicated pairs have their play counts summed.
-- unique_key: user_id, song_id
-- not_null: user_id, song_id, play_count
SELECT
    user_id,
    song_id,
    sum(play_count)::BIGINT AS play_count
FROM entp_listens
GROUP BY user_id, song_id
