"""Pure functions of the track-level models (issue 7): pairs, item2vec, PPMI-SVD, the RecSys
Challenge 2018 metrics on hand-computed examples, rankers, duplicates, the map, similar tracks
and the command line. Fast: no Dagster, no generated datasets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.contract import TRACK_EMBEDDINGS
from spotify_assets.tracks import continuation as cont
from spotify_assets.tracks.duplicates import (
    CONFIRMED,
    FLAGGED,
    UNVERIFIED,
    duplicate_groups,
    null_cosine_threshold,
    pair_cosines,
    verdicts,
)
from spotify_assets.tracks.embedding_map import GENRE_KEYWORDS, name_genres, pca_2d, render_map, track_genres
from spotify_assets.tracks.item2vec import (
    Item2VecConfig,
    build_vocabulary,
    cooccurrence_matrix,
    l2_normalize,
    pick_device,
    ppmi_svd,
    skipgram_pairs,
    skipgram_pairs_reference,
    subsample_keep,
    train_item2vec,
)
from spotify_assets.tracks.playlists import sequences
from spotify_assets.tracks.similar import TrackEmbeddings, similar_tracks
from spotify_assets.tracks.validation import embeddings_valid, png_valid


# --------------------------------------------------------------------------------------
# planted genres: playlists that draw all their tracks from one genre
# --------------------------------------------------------------------------------------


def planted_playlists(n_genres: int = 4, per_genre: int = 25, playlists: int = 240, length: int = 20,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, tokens, genre_of_token): each playlist samples ``length`` distinct tracks of one genre."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, n_genres, playlists)
    tokens = np.concatenate([g * per_genre + rng.choice(per_genre, length, replace=False) for g in genre])
    indptr = np.arange(0, playlists * length + 1, length, dtype=np.int64)
    return indptr, tokens.astype(np.int64), np.repeat(np.arange(n_genres), per_genre)


def genre_separation(vectors: np.ndarray, genre: np.ndarray) -> tuple[float, float]:
    """Mean cosine of distinct same-genre pairs and of cross-genre pairs."""
    v = l2_normalize(vectors)
    cos = v @ v.T
    same = genre[:, None] == genre[None, :]
    off_diagonal = ~np.eye(genre.size, dtype=bool)
    return float(cos[same & off_diagonal].mean()), float(cos[~same].mean())


# --------------------------------------------------------------------------------------
# pairs and vocabulary
# --------------------------------------------------------------------------------------


def test_skipgram_pairs_match_the_pure_reference() -> None:
    indptr = np.array([0, 4, 5, 9], np.int64)  # sequences of 4, 1 and 4 tokens
    tokens = np.arange(9, dtype=np.int64) * 10
    centers, contexts = skipgram_pairs(indptr, tokens, window=2)
    fast = sorted(zip((centers // 10).tolist(), (contexts // 10).tolist()))
    slow = sorted((i, j) for i, j, _ in skipgram_pairs_reference(indptr, tokens, 2))
    assert fast == slow
    assert (3, 4) not in fast and (4, 5) not in fast  # never across sequences


def test_dynamic_window_keeps_a_seeded_subset_of_the_full_window() -> None:
    indptr, tokens, _ = planted_playlists(playlists=20)
    full = set(zip(*skipgram_pairs(indptr, np.arange(tokens.size), 5)))
    a = skipgram_pairs(indptr, np.arange(tokens.size), 5, np.random.default_rng(3))
    b = skipgram_pairs(indptr, np.arange(tokens.size), 5, np.random.default_rng(3))
    assert set(zip(*a)) <= full and len(a[0]) < len(full)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_vocabulary_drops_and_counts_rare_tracks() -> None:
    vocab = build_vocabulary(np.array([0, 0, 0, 2, 2, 3, 5]), n_tracks=7, min_count=2)
    np.testing.assert_array_equal(vocab.track_ids, [0, 2])
    np.testing.assert_array_equal(vocab.counts, [3, 2])
    assert (vocab.dropped_tracks, vocab.dropped_tokens) == (2, 2)  # tracks 3 and 5, once each
    np.testing.assert_array_equal(vocab.encode(np.array([2, 3, 0, -1, 99])), [1, -1, 0, -1, -1])
    with pytest.raises(ValueError):
        build_vocabulary(np.array([7]), n_tracks=7)


def test_sequences_and_subsampling() -> None:
    np.testing.assert_array_equal(sequences(np.array([4, 4, 7, 9, 9, 9])), [0, 2, 3, 6])
    counts = np.array([1000, 1])
    keep = subsample_keep(np.array([0] * 1000 + [1] * 10), counts, 1e-3, np.random.default_rng(0))
    assert keep[1000:].all() and keep[:1000].mean() < 0.2  # the frequent token is thinned out
    assert subsample_keep(np.array([0, 1]), counts, 0.0, np.random.default_rng(0)).all()


def test_pick_device() -> None:
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        pick_device("tpu")


# --------------------------------------------------------------------------------------
# item2vec and PPMI-SVD
# --------------------------------------------------------------------------------------

SMALL = Item2VecConfig(dim=16, window=5, negatives=5, epochs=5, batch_size=1024, lr=0.2, subsample=0.0, seed=0)


def test_item2vec_puts_planted_same_genre_tracks_closer() -> None:
    indptr, tokens, genre = planted_playlists()
    counts = np.bincount(tokens, minlength=genre.size)
    result = train_item2vec(indptr, tokens, counts, SMALL, accelerator="cpu")
    assert result.vectors.shape == (genre.size, 16) and result.vectors.dtype == np.float32
    same, cross = genre_separation(result.vectors, genre)
    assert same > cross + 0.3, (same, cross)
    # every track's nearest neighbour is of its own genre
    v = l2_normalize(result.vectors)
    cos = v @ v.T
    np.fill_diagonal(cos, -np.inf)
    assert (genre[cos.argmax(axis=1)] == genre).mean() > 0.95
    assert result.history[-1]["loss_per_pair"] < result.history[0]["loss_per_pair"]


def test_item2vec_same_seed_same_vectors_other_seed_differs() -> None:
    indptr, tokens, genre = planted_playlists(playlists=60)
    counts = np.bincount(tokens, minlength=genre.size)
    config = Item2VecConfig(dim=8, epochs=2, batch_size=256, subsample=1e-2, seed=5)
    a = train_item2vec(indptr, tokens, counts, config, accelerator="cpu").vectors
    b = train_item2vec(indptr, tokens, counts, config, accelerator="cpu").vectors
    c = train_item2vec(indptr, tokens, counts, Item2VecConfig(dim=8, epochs=2, batch_size=256, subsample=1e-2, seed=6),
                       accelerator="cpu").vectors
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_item2vec_chunks_bound_memory_and_still_learn() -> None:
    indptr, tokens, genre = planted_playlists()
    counts = np.bincount(tokens, minlength=genre.size)
    chunked = train_item2vec(indptr, tokens, counts, Item2VecConfig(**{**SMALL.__dict__, "chunk_tokens": 500}), "cpu")
    same, cross = genre_separation(chunked.vectors, genre)
    assert same > cross + 0.3


def test_item2vec_rejects_tokens_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError):
        train_item2vec(np.array([0, 2]), np.array([0, 5]), np.array([1, 1]), SMALL, "cpu")


def test_ppmi_svd_separates_planted_genres_and_is_reproducible() -> None:
    indptr, tokens, genre = planted_playlists()
    cooc = cooccurrence_matrix(indptr, tokens, genre.size, window=5)
    assert (cooc != cooc.T).nnz == 0  # symmetric
    a, b = ppmi_svd(cooc, 8, seed=1), ppmi_svd(cooc, 8, seed=1)
    np.testing.assert_array_equal(a, b)
    same, cross = genre_separation(a, genre)
    assert same > cross + 0.3, (same, cross)


# --------------------------------------------------------------------------------------
# splits, examples, queries
# --------------------------------------------------------------------------------------


def test_split_playlists_is_seeded_sized_and_order_free() -> None:
    pids = np.arange(1000) * 3
    a = cont.split_playlists(pids, seed=0, val_share=0.1, test_share=0.2)
    assert np.bincount(a, minlength=3).tolist() == [700, 100, 200]
    shuffled = np.random.default_rng(1).permutation(pids.size)
    np.testing.assert_array_equal(cont.split_playlists(pids[shuffled], seed=0, val_share=0.1, test_share=0.2), a[shuffled])
    assert not np.array_equal(cont.split_playlists(pids, seed=1, val_share=0.1, test_share=0.2), a)
    with pytest.raises(ValueError):
        cont.split_playlists(np.array([1, 1]), seed=0)


def test_next_track_examples_are_sliding_windows() -> None:
    indptr = np.array([0, 7, 10], np.int64)  # 7 tracks -> 2 examples; 3 tracks -> none
    tracks = np.array([10, 11, 12, 13, 14, 15, 16, 20, 21, 22])
    seq, offset, windows = cont.next_track_examples(indptr, tracks, context=5)
    np.testing.assert_array_equal(seq, [0, 0])
    np.testing.assert_array_equal(offset, [5, 6])
    np.testing.assert_array_equal(windows, [[10, 11, 12, 13, 14, 15], [11, 12, 13, 14, 15, 16]])


def test_continuation_queries_hold_out_unique_non_seed_tracks() -> None:
    indptr = np.array([0, 8, 13, 20], np.int64)
    tracks = np.array([1, 2, 3, 4, 5, 6, 2, 6,  # seeds 1-5, held out {6} (2 repeats a seed, 6 twice)
                       7, 8, 9, 10, 11,  # 5 tracks: no held-out part -> no query
                       1, 2, 3, 4, 5, 9, 8])
    q = cont.continuation_queries(indptr, tracks, n_seed=5)
    np.testing.assert_array_equal(q.seq, [0, 2])
    np.testing.assert_array_equal(q.seeds, [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(q.truth_indptr, [0, 1, 3])
    np.testing.assert_array_equal(q.truth, [6, 8, 9])
    sub = q.subset(np.array([1]))
    np.testing.assert_array_equal(sub.truth, [8, 9])
    np.testing.assert_array_equal(sub.truth_indptr, [0, 2])


# --------------------------------------------------------------------------------------
# metrics (hand-computed)
# --------------------------------------------------------------------------------------

# tracks 0..9; artists: 0->A0, 1->A1, 2->A2, 3->A3, 4->A3, 5->A3, 6->A1, 7->A9, 8->A9, 9->A9
ARTIST = np.array([0, 1, 2, 3, 3, 3, 1, 9, 9, 9])


def truth(*sets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[0, np.cumsum([len(s) for s in sets])].astype(np.int64), np.concatenate([np.array(s) for s in sets])


def test_r_precision_with_artist_partial_credit_by_hand() -> None:
    indptr, g = truth([1, 2, 3, 4])
    # |G| = 4: the window is R[:4] = [1, 5, 6, 2]; track hits 1 and 2.
    # unmatched recommendations 5 (artist A3) and 6 (A1); unmatched truth 3, 4 (both A3):
    # A3 matches once (0.25); A1 belongs only to the matched track 1, so it earns nothing.
    recommended = np.array([[1, 5, 6, 2, 3, 4]])
    assert cont.r_precision(recommended, indptr, g, ARTIST)[0] == pytest.approx((2 + 0.25) / 4)
    assert cont.r_precision(recommended, indptr, g)[0] == pytest.approx(2 / 4)  # track level only
    # tracks after position |G| earn nothing, even exact ones
    assert cont.r_precision(np.array([[7, 8, 9, 0, 1, 2]]), indptr, g, ARTIST)[0] == 0.0
    # two recommendations of the same missing artist count once
    indptr2, g2 = truth([3, 7])
    assert cont.r_precision(np.array([[4, 5]]), indptr2, g2, ARTIST)[0] == pytest.approx(0.25 / 2)
    # artist credit never exceeds what a track match earns: all-artist matches give 0.25
    assert cont.r_precision(np.array([[4, 8]]), indptr2, g2, ARTIST)[0] == pytest.approx(0.5 / 2)


def test_ndcg_by_hand() -> None:
    indptr, g = truth([1, 2], [9])
    recommended = np.array([[3, 1, 4, 2], [0, 1, 2, 3]])
    # DCG = 0 + 1/log2(2) + 0 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(2) = 2
    np.testing.assert_allclose(cont.ndcg(recommended, indptr, g), [0.75, 0.0])
    # a perfect list scores 1
    assert cont.ndcg(np.array([[2, 1, 0], [9, 0, 1]]), indptr, g)[0] == pytest.approx(1.0)


def test_clicks_by_hand() -> None:
    indptr, g = truth([42], [42], [42], [42])
    recommended = np.full((4, 500), 7, np.int64)
    recommended[0, 0] = 42  # 1st position: no refresh
    recommended[1, 9] = 42  # 10th position: still the first page
    recommended[2, 11] = 42  # 12th position: one refresh
    # row 3: never found -> 51
    np.testing.assert_array_equal(cont.clicks(recommended, indptr, g), [0, 0, 1, 51])


def test_metrics_validate_their_input() -> None:
    indptr, g = truth([1])
    with pytest.raises(ValueError):
        cont.ndcg(np.array([1, 2]), indptr, g)
    with pytest.raises(ValueError):
        cont.r_precision(np.array([[1]]), np.array([0, 0]), np.zeros(0, np.int64))


def test_empty_slots_never_match() -> None:
    indptr, g = truth([0], [1])  # query 1's "-1" slot must not hit query 0's track
    recommended = np.array([[-1, 5], [-1, -1]])
    np.testing.assert_array_equal(cont.clicks(recommended, indptr, g), [51, 51])
    np.testing.assert_array_equal(cont.r_precision(recommended, indptr, g, ARTIST), [0.0, 0.0])


# --------------------------------------------------------------------------------------
# rankers
# --------------------------------------------------------------------------------------


def test_top_k_orders_by_score_then_id_and_excludes() -> None:
    scores = np.array([[0.5, 0.9, 0.9, 0.1, -np.inf]])
    np.testing.assert_array_equal(cont.top_k(scores.copy(), 3), [[1, 2, 0]])
    np.testing.assert_array_equal(cont.top_k(scores.copy(), 3, exclude=np.array([[1, -1]])), [[2, 0, 3]])
    np.testing.assert_array_equal(cont.top_k(scores.copy(), 6), [[1, 2, 0, 3, -1, -1]])


def test_popularity_rank_skips_seeds() -> None:
    popularity = np.array([5.0, 9.0, 9.0, 1.0, 0.0])
    ranked = cont.popularity_rank(popularity, np.array([[1, 3], [4, -1]]), k=3)
    np.testing.assert_array_equal(ranked, [[2, 0, 4], [1, 2, 0]])


def test_cooccurrence_rank_counts_shared_playlists_then_popularity() -> None:
    # playlists: {0,1,2}, {0,1}, {0,3}, {4}
    train = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 1]], np.float32))
    ranked = cont.cooccurrence_rank(train, np.array([[0, -1]]), k=4)
    # with track 0: track 1 twice, 2 and 3 once (tie -> equal popularity 1 -> lower id), then 4
    np.testing.assert_array_equal(ranked, [[1, 2, 3, 4]])


def test_embedding_rank_uses_the_mean_seed_vector_and_backfills() -> None:
    vectors = l2_normalize(np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32))
    vocab_ids = np.array([0, 1, 2, 3])
    popularity = np.array([0, 0, 0, 0, 5, 1], np.float64)  # tracks 4, 5 have no embedding
    ranked = cont.embedding_rank(vectors, vocab_ids, 6, np.array([[0, -1], [5, -1]]), k=5, popularity=popularity)
    np.testing.assert_array_equal(ranked[0], [1, 2, 3, 4, 5])  # neighbours of 0, then popularity
    assert ranked[1][0] == 4  # no embedded seed: popularity order


def test_als_rank_returns_full_lists_without_seeds() -> None:
    indptr, tokens, _ = planted_playlists(playlists=80)
    train = cont.playlist_track_matrix(indptr, tokens, 100)
    seeds = np.array([[0, 1, 2], [50, 51, 52]])
    ranked = cont.als_rank(train, seeds, k=10, factors=8, iterations=5, seed=0)
    assert ranked.shape == (2, 10) and (ranked >= 0).all()
    assert not np.isin(ranked[0], seeds[0]).any()
    assert (ranked[0] // 25 == 0).mean() > 0.7  # mostly the seeds' genre


# --------------------------------------------------------------------------------------
# duplicates
# --------------------------------------------------------------------------------------


def test_duplicate_groups_match_canonical_keys_and_keep_remixes_apart() -> None:
    ids = np.arange(7)
    titles = ["Get Lucky", "Get Lucky - Radio Edit", "get  lucky (feat. Pharrell Williams)", "Get Lucky (Remix)",
              "Get Lucky", "One More Time", "One More Time - Remastered 2011"]
    artists = ["Daft Punk", "Daft Punk", "Daft Punk", "Daft Punk", "Someone Else", "Daft Punk", "Daft Punk"]
    popularity = np.array([3, 10, 1, 50, 5, 2, 2])
    groups = duplicate_groups(ids, titles, artists, popularity)
    assert groups.n_groups == 2
    members = {int(g): sorted(groups.track_ids[groups.group == g].tolist()) for g in np.unique(groups.group)}
    assert sorted(members.values()) == [[0, 1, 2], [5, 6]]  # remix (3) and other artist (4) apart
    canonical = dict(zip(groups.track_ids.tolist(), groups.canonical.tolist()))
    assert canonical[0] == canonical[2] == 1  # the most popular version
    assert canonical[6] == 5  # equal popularity: the lower id
    a, b = groups.pairs()
    assert sorted(zip(a.tolist(), b.tolist())) == [(1, 0), (1, 2), (5, 6)]


def test_duplicate_verdicts_from_embedding_evidence() -> None:
    vectors = l2_normalize(np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0]], np.float32))
    cos = pair_cosines(vectors, np.array([10, 11, 12, 13]), np.array([10, 10, 10]), np.array([11, 12, 99]))
    assert cos[0] == pytest.approx(0.995, abs=1e-3) and cos[1] == pytest.approx(0.0, abs=1e-6) and np.isnan(cos[2])
    assert verdicts(cos, 0.5).tolist() == [CONFIRMED, FLAGGED, UNVERIFIED]
    threshold = null_cosine_threshold(l2_normalize(np.random.default_rng(0).standard_normal((200, 16))), 0.95)
    assert 0.1 < threshold < 0.8  # random 16-d directions rarely align


# --------------------------------------------------------------------------------------
# the map
# --------------------------------------------------------------------------------------


def test_playlist_names_vote_for_genres() -> None:
    labels = list(GENRE_KEYWORDS)
    got = name_genres(["Country Roads", "my  WORKOUT mix", "stuff", None, "christmas pop", "popcorn"])
    assert [labels[g] if g >= 0 else None for g in got] == ["country", "workout", None, None, "christmas", None]
    country, workout = labels.index("country"), labels.index("workout")
    row_genre = np.array([country, country, workout, -1, workout])
    row_track = np.array([7, 7, 7, 8, 9])
    np.testing.assert_array_equal(track_genres(row_genre, row_track, np.array([7, 8, 9])), [country, -1, workout])


def test_pca_2d_finds_the_dominant_direction_reproducibly() -> None:
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 10, 300), rng.normal(0, 1, 300), rng.normal(0, 0.1, 300)]
    coords, explained = pca_2d(x)
    assert coords.shape == (300, 2) and explained[0] > 0.9 > explained[1]
    assert abs(np.corrcoef(coords[:, 0], x[:, 0])[0, 1]) > 0.99
    np.testing.assert_array_equal(pca_2d(x)[0], coords)


def test_render_map_writes_a_valid_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(300, 2))
    genre = rng.integers(-1, 12, 300)
    path = tmp_path / "map.png"
    legend = render_map(coords, genre, path, "test", top_genres=5)
    assert png_valid(path).passed
    assert sum(legend.values()) == 300 and len(legend) == 6  # 5 genres + other
    assert not png_valid(tmp_path / "missing.png").passed


# --------------------------------------------------------------------------------------
# similar tracks, validation, command line
# --------------------------------------------------------------------------------------


def _embeddings(n: int = 60, d: int = 8) -> TrackEmbeddings:
    vectors = l2_normalize(np.random.default_rng(0).standard_normal((n, d)).astype(np.float32))
    return TrackEmbeddings(vectors, np.arange(n, dtype=np.int64) * 2)  # track ids are even numbers


def test_similar_tracks_exact_and_annoy_agree(tmp_path) -> None:
    from annoy import AnnoyIndex

    emb = _embeddings()
    ids, sims, method = similar_tracks(emb, np.array([0, 10]), k=5)
    assert method == "exact" and ids.shape == (2, 5)
    assert 0 not in ids[0] and 10 not in ids[1]  # never the query itself
    brute = emb.vectors @ emb.vectors[0]
    brute[0] = -np.inf
    np.testing.assert_array_equal(ids[0], emb.track_ids[np.argsort(-brute)[:5]])
    assert (np.diff(sims, axis=1) <= 1e-7).all()
    index = AnnoyIndex(emb.vectors.shape[1], "angular")
    for i, v in enumerate(emb.vectors):
        index.add_item(i, v.tolist())
    index.build(50, n_jobs=1)
    index.save(str(tmp_path / "track_index.ann"))
    a_ids, a_sims, a_method = similar_tracks(emb, np.array([0, 10]), k=5, index_path=tmp_path / "track_index.ann")
    assert a_method == "annoy"
    np.testing.assert_array_equal(a_ids, ids)  # 50 trees over 60 items: exact
    np.testing.assert_allclose(a_sims, sims, atol=1e-4)
    with pytest.raises(ValueError):
        similar_tracks(emb, np.array([1]), k=5)  # odd ids have no embedding
    # an index built from older embeddings (another item count) is not used: exact, saying why
    grown = type(emb)(np.vstack([emb.vectors, emb.vectors[:1]]), np.r_[emb.track_ids, emb.track_ids.max() + 2])
    g_ids, _, g_method = similar_tracks(grown, np.array([0, 10]), k=5, index_path=tmp_path / "track_index.ann")
    assert g_method.startswith("exact (the index holds 60 items, the embeddings 61")
    assert g_ids.shape == (2, 5)


def test_embeddings_valid_catches_broken_artifacts() -> None:
    emb = _embeddings()
    assert embeddings_valid(emb.vectors, emb.track_ids, 200).passed
    assert not embeddings_valid(emb.vectors * 2, emb.track_ids, 200).passed
    assert not embeddings_valid(emb.vectors, emb.track_ids, 100).passed  # ids out of range
    assert not embeddings_valid(emb.vectors, np.zeros(60, np.int64), 200).passed


def test_cli_similar_prints_neighbours_and_help(tmp_path, capsys) -> None:
    import duckdb

    from spotify_assets.tracks.__main__ import main

    emb = _embeddings()
    TRACK_EMBEDDINGS.under(tmp_path / "artifacts").parent.mkdir(parents=True)
    np.savez(TRACK_EMBEDDINGS.under(tmp_path / "artifacts"), vectors=emb.vectors, track_ids=emb.track_ids)
    (tmp_path / "warehouse").mkdir()
    with duckdb.connect(str(tmp_path / "warehouse" / "spotify.duckdb")) as con:
        con.execute("CREATE TABLE track_dictionary AS SELECT i AS track_id, 'Song ' || i AS track_name, "
                    "'Artist ' || (i % 7) AS artist_name, 120 - i AS n_playlists FROM range(120) t(i)")
        con.execute("UPDATE track_dictionary SET track_name = 'Get Lucky' WHERE track_id = 10")
    assert main(["similar", "get lucky", "--k", "3", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Get Lucky — Artist 3" in out and out.count("| Song ") == 3
    # the exact name wins over more popular names containing it ("Song 20" .. "Song 29")
    assert main(["similar", "Song 2", "--k", "2", "--data-dir", str(tmp_path)]) == 0
    assert "nearest to Song 2 — Artist 2" in capsys.readouterr().out
    # an exact match without an embedding (odd ids) falls to the next embedded match
    assert main(["similar", "Song 1", "--k", "2", "--data-dir", str(tmp_path)]) == 0
    assert "nearest to Song 12 — Artist 5" in capsys.readouterr().out
    assert main(["similar", "no such song", "--data-dir", str(tmp_path)]) == 1
    assert main(["similar", "x", "--data-dir", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit):
        main(["similar", "--help"])
    assert "--data-dir" in capsys.readouterr().out
