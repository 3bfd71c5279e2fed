"""The continuation protocol (RecSys Challenge 2018 categories) and the two-tower model on
planted data: name features, challenge sets, metrics, examples, training (what it learns,
determinism, checkpoints) and the proof that held-out playlists train no model. Pure
functions only: no Dagster, no generated datasets; a few seconds each."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spotify_assets.tracks import challenge as ch
from spotify_assets.tracks import continuation as cont
from spotify_assets.tracks.item2vec import Item2VecConfig, build_vocabulary, l2_normalize, train_item2vec
from spotify_assets.tracks.names import name_feature_csr, name_features, name_tokens, normalize_name
from spotify_assets.tracks.two_tower import (
    CHECKPOINT_FORMAT,
    TrackFeatures,
    TwoTowerConfig,
    duration_buckets,
    epoch_examples,
    load_two_tower,
    popularity_buckets,
    train_two_tower,
)

# --------------------------------------------------------------------------------------
# planted data: genre playlists whose names say the genre
# --------------------------------------------------------------------------------------

GENRE_NAMES = (("rock", "classic rock", "guitar heroes"), ("chill", "chill vibes", "lazy sunday"),
               ("workout", "gym", "pump up"), ("country", "country roads", "honky tonk"))
DECOR = ("", " 🔥", "!!", " 2017", "  ")


class Planted:
    """``playlists`` playlists, each of one genre (``playlist_genre``), named after it, with
    8-39 distinct tracks of that genre drawn with Zipf popularity; ``per_genre`` tracks per
    genre (track t is in genre ``t // per_genre``); artist ``t // 4``, album ``t // 2``."""

    def __init__(self, playlists: int = 600, per_genre: int = 60, seed: int = 0, extra_tracks: int = 0):
        rng = np.random.default_rng(seed)
        n_genres = len(GENRE_NAMES)
        self.per_genre = per_genre
        self.playlist_genre = rng.integers(0, n_genres, playlists)
        weights = 1.0 / (np.arange(per_genre) + 5.0)
        weights /= weights.sum()
        lengths = rng.integers(8, 40, playlists)
        parts, names = [], []
        for g, n in zip(self.playlist_genre.tolist(), lengths.tolist()):
            parts.append(g * per_genre + rng.choice(per_genre, n, replace=False, p=weights))
            base = GENRE_NAMES[g][int(rng.integers(3))]
            style = int(rng.integers(3))
            base = base.upper() if style == 0 else base.title() if style == 1 else base
            names.append(base + DECOR[int(rng.integers(len(DECOR)))])
        self.tracks = np.concatenate(parts).astype(np.int64)
        self.indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        self.names = names
        self.n_tracks = n_genres * per_genre + extra_tracks
        ids = np.arange(self.n_tracks)
        self.features = TrackFeatures(ids // 4, ids // 2, 180_000 + (ids % 7) * 10_000)
        self.track_genre = ids // per_genre
        self.split = cont.split_playlists(np.arange(playlists), seed)

    def part(self, split: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        chosen = self.split == split
        lengths = np.diff(self.indptr)
        rows = np.repeat(chosen, lengths)
        return (np.r_[0, np.cumsum(lengths[chosen])].astype(np.int64), self.tracks[rows],
                [n for n, c in zip(self.names, chosen.tolist()) if c])


# title_dropout 0.2: what these planted tests were tuned with (the model's default is now 0.3)
FAST = TwoTowerConfig(dim=16, hidden=32, name_buckets=2048, batch_size=32, positives_per_example=4,
                      uniform_negatives=64, max_epochs=8, examples_per_playlist=4, sparse_lr=0.05, lr=0.01,
                      title_dropout=0.2)


def train_planted(data: Planted, path: Path, config: TwoTowerConfig = FAST, val: bool = True):
    indptr, tracks, names = data.part(cont.TRAIN)
    known = np.bincount(tracks, minlength=data.n_tracks) > 0
    val_set = (ch.build_challenge_set(data.indptr, data.tracks, data.split == cont.VAL, known, 1, per_category=0,
                                      min_queries=1), data.names) if val else None
    return train_two_tower(indptr, tracks, names, data.features, config, path, val=val_set, accelerator="cpu",
                           catalogue=lambda ids: {"track_uri": [f"spotify:track:{i:022d}" for i in ids.tolist()],
                                                  "track_name": [f"Song {i}" for i in ids.tolist()],
                                                  "artist_name": [f"Artist {i // 4}" for i in ids.tolist()]})


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture(scope="module")
def trained(planted: Planted, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("two_tower") / "two_tower.pt"
    result = train_planted(planted, path)
    return path, result


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------


def test_names_normalize_and_share_features_across_spellings() -> None:
    assert normalize_name("  Road   TRIP 🚗!! ") == "road trip"
    assert normalize_name("Café Mañana") == "cafe manana"
    assert normalize_name("R&B") == "r&b"
    assert normalize_name("🔥🔥") == "" and name_features("🔥🔥", 1024).size == 0
    assert {"w:road", "w:trip", "b:road trip", "c:<ro", "c:rip>", "c:<roa"} <= set(name_tokens("Road Trip"))
    spaced, joined = set(name_features("Road Trip", 1 << 20)), set(name_features("roadtrip", 1 << 20))
    assert len(spaced & joined) / len(joined) > 0.6  # the character n-grams carry the shared spelling
    assert not set(name_features("workout", 1 << 20)) & spaced


def test_name_hashing_is_stable_across_processes() -> None:
    here = name_features("chill vibes", 4096).tolist()
    code = "from spotify_assets.tracks.names import name_features; print(name_features('chill vibes', 4096).tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == str(here)  # CRC-32, not Python's salted hash


def test_name_feature_csr_matches_per_name_features() -> None:
    names = ["rock", "", "Chill Vibes", "rock", "🔥"]
    indptr, rows = name_feature_csr(names, 512)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(rows[indptr[i]:indptr[i + 1]], name_features(name, 512))
    assert indptr[2] - indptr[1] == 0 and indptr[5] - indptr[4] == 0


# --------------------------------------------------------------------------------------
# the challenge set and its metrics
# --------------------------------------------------------------------------------------


def test_challenge_set_follows_the_categories(planted: Planted) -> None:
    known = np.ones(planted.n_tracks, bool)
    known[::7] = False  # tracks the training playlists never had
    held_out = planted.split == cont.TEST
    s = ch.build_challenge_set(planted.indptr, planted.tracks, held_out, known, seed=3, per_category=0,
                               min_queries=1)
    assert s.categories_present() == [i for i, c in enumerate(ch.CATEGORIES) if c.seeds <= 25]
    assert set(s.skipped) == {"title + first 100", "title + random 100"}  # planted playlists are < 40 tracks
    assert held_out[s.playlist].all()
    for q in range(s.size):
        category = ch.CATEGORIES[s.category[q]]
        p = s.playlist[q]
        tracks = planted.tracks[planted.indptr[p]:planted.indptr[p + 1]]
        seeds = s.seeds[q][s.seeds[q] >= 0]
        truth = s.truth[s.truth_indptr[q]:s.truth_indptr[q + 1]]
        assert seeds.size == category.seeds and s.has_title[q] == category.title
        if not category.random:
            np.testing.assert_array_equal(seeds, tracks[:category.seeds])
        assert np.isin(seeds, tracks).all() and np.unique(seeds).size == seeds.size
        expected = np.setdiff1d(tracks, seeds)
        np.testing.assert_array_equal(truth, expected[known[expected]])
    # random seeds are not the first tracks (for most playlists)
    random25 = np.flatnonzero(s.category == 7)
    firsts = [(s.seeds[q, :25] == planted.tracks[planted.indptr[s.playlist[q]]:][:25]).all() for q in random25]
    assert np.mean(firsts) < 0.2
    # seeded, and the per-category draw
    again = ch.build_challenge_set(planted.indptr, planted.tracks, held_out, known, seed=3, per_category=0,
                                   min_queries=1)
    np.testing.assert_array_equal(again.seeds, s.seeds)
    few = ch.build_challenge_set(planted.indptr, planted.tracks, held_out, known, seed=3, per_category=5,
                                 min_queries=1)
    assert np.bincount(few.category).max() == 5
    none = ch.build_challenge_set(planted.indptr, planted.tracks, held_out, known, seed=3, min_queries=10_000)
    assert none.size == 0 and len(none.skipped) == len(ch.CATEGORIES)


def test_precision_at_by_hand() -> None:
    truth_indptr, truth = np.array([0, 2, 3]), np.array([5, 9, 1])
    recommended = np.array([[5, 1, 9, -1], [2, 3, 4, 1]])
    np.testing.assert_allclose(ch.precision_at(recommended, truth_indptr, truth, 2), [0.5, 0.0])
    np.testing.assert_allclose(ch.precision_at(recommended, truth_indptr, truth, 4), [0.5, 0.25])


def test_evaluate_models_scores_every_category_and_overall(planted: Planted) -> None:
    known = np.ones(planted.n_tracks, bool)
    s = ch.build_challenge_set(planted.indptr, planted.tracks, planted.split == cont.TEST, known, 0, per_category=0,
                               min_queries=1)
    truth_first = np.full((s.size, 500), -1, np.int64)
    lengths = np.diff(s.truth_indptr)
    for q in range(s.size):  # a perfect ranker: the held-out tracks themselves
        truth_first[q, :lengths[q]] = s.truth[s.truth_indptr[q]:s.truth_indptr[q + 1]]
    rows = ch.evaluate_models({"perfect": lambda q: truth_first, "empty": lambda q: np.full((q.size, 500), -1)},
                              s, planted.features.artist)
    by = {(r["category"], r["model"]): r for r in rows}
    assert {r["category"] for r in rows} == {ch.CATEGORIES[c].name for c in s.categories_present()} | {"overall"}
    assert by[("overall", "perfect")]["r_precision"] == 1.0 and by[("overall", "perfect")]["ndcg"] == 1.0
    assert by[("overall", "perfect")]["clicks"] == 0.0 and by[("overall", "empty")]["clicks"] == 51.0
    assert by[("overall", "perfect")]["queries"] == s.size
    text = ch.results_markdown(rows)
    assert "**R-precision (artist credit)**" in text and "| title only |" in text and "**1.0000**" in text


def test_target_verdicts_beat_and_within() -> None:
    rows = [{"category": c, "model": m, "r_precision": v, "ndcg": v} for c, m, v in [
        ("title only", "two_tower", 0.20), ("title only", "als", 0.05), ("title only", "item2vec", 0.05),
        ("title + first 5", "two_tower", 0.10), ("title + first 5", "als", 0.12), ("title + first 5", "item2vec", 0.0),
        ("title + first 25", "two_tower", 0.295), ("title + first 25", "als", 0.30),
        ("title + first 25", "cooccurrence", 0.31)]]
    verdicts = {(v["category"], v["metric"]): v for v in ch.target_verdicts(rows)}
    assert verdicts[("title only", "ndcg")]["met"] and verdicts[("title only", "ndcg")]["margin"] == 0.15
    assert not verdicts[("title + first 5", "ndcg")]["met"]
    within = verdicts[("title + first 25", "ndcg")]
    assert not within["met"] and "cooccurrence" in within["target"] and within["margin"] == pytest.approx(-0.005)


# --------------------------------------------------------------------------------------
# examples and buckets
# --------------------------------------------------------------------------------------


def test_buckets() -> None:
    np.testing.assert_array_equal(duration_buckets(np.array([0, -5, 1, 29_999, 30_000, 10**8])), [0, 0, 1, 1, 2, 21])
    np.testing.assert_array_equal(popularity_buckets(np.array([0, 1, 2, 3, 4, 1000])), [0, 1, 2, 2, 3, 10])


def test_epoch_examples_hold_out_their_positives(planted: Planted) -> None:
    indptr, tracks, names = planted.part(cont.TRAIN)
    name_indptr, name_ids = name_feature_csr(names, 512)
    config = replace(FAST, examples_per_playlist=3, random_context_share=0.5, title_dropout=0.5)
    ex = epoch_examples(indptr, tracks, name_indptr, name_ids, config, epoch=0)
    lengths = np.diff(indptr)
    assert ex.size == 3 * lengths.size and ex.target.shape == (ex.size, FAST.positives_per_example)
    assert set(np.unique(ex.n_context).tolist()) <= {0, 1, 5, 10, 25} | set((lengths - 1).tolist())
    for e in range(ex.size):
        context = ex.context[ex.context_indptr[e]:ex.context_indptr[e + 1]]
        positives = ex.target[e][ex.target[e] >= 0]
        assert positives.size >= 1 and np.unique(positives).size == positives.size
        assert not np.isin(positives, context).any()  # the tracks to find are never given
        n_names = ex.name_indptr[e + 1] - ex.name_indptr[e]
        assert n_names > 0 or context.size > 0  # a title is only hidden when there are tracks
    # every example's tracks come from one training playlist (the planted genres never mix)
    genre_of = planted.track_genre
    for e in range(0, ex.size, 7):
        both = np.r_[ex.context[ex.context_indptr[e]:ex.context_indptr[e + 1]], ex.target[e][ex.target[e] >= 0]]
        assert np.unique(genre_of[both]).size == 1
    again = epoch_examples(indptr, tracks, name_indptr, name_ids, config, epoch=0)
    np.testing.assert_array_equal(again.context, ex.context)
    other = epoch_examples(indptr, tracks, name_indptr, name_ids, config, epoch=1)
    assert not np.array_equal(other.target, ex.target)


def test_first_track_contexts_are_playlist_prefixes(planted: Planted) -> None:
    indptr, tracks, names = planted.part(cont.TRAIN)
    name_indptr, name_ids = name_feature_csr(names, 512)
    ex = epoch_examples(indptr, tracks, name_indptr, name_ids, replace(FAST, random_context_share=0.0), epoch=2)
    prefixes = {tuple(tracks[indptr[p]:indptr[p] + k]) for p in range(indptr.size - 1) for k in (1, 5, 10, 25)}
    for e in range(ex.size):
        context = tuple(ex.context[ex.context_indptr[e]:ex.context_indptr[e + 1]].tolist())
        if 0 < len(context) and len(context) in (1, 5, 10, 25):
            assert context in prefixes


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def test_two_tower_recommends_the_genre_from_a_name_or_tracks(planted: Planted, trained) -> None:
    path, result = trained
    model = load_two_tower(path)
    assert result.best_epoch >= 0 and np.isfinite(result.best_val_ndcg) and result.device == "cpu"
    assert [row["epoch"] for row in result.history] == list(range(result.epochs_run))
    names = ["Classic Rock 🔥", "chill", "GYM!!", "honkytonk", "banana bread"]
    ids, scores = model.rank(names, np.full((len(names), 1), -1), 20)
    genres = planted.track_genre[ids]
    for g in range(4):  # a name alone finds its genre (even "honkytonk", never seen without a space)
        assert (genres[g] == g).mean() >= 0.9, (names[g], genres[g])
    assert (np.diff(scores, axis=1) <= 0).all()
    # tracks alone (no name) find their genre too, and never come back themselves
    seeds = np.array([[1, 2, 3], [61, 62, 63], [121, 122, 123], [181, 182, 183]])
    ids, _ = model.rank([""] * 4, seeds, 20)
    assert (planted.track_genre[ids] == np.arange(4)[:, None]).mean() >= 0.9
    assert not (ids[:, :, None] == seeds[:, None, :]).any()
    # seeds the model does not know are ignored, not an error
    ids_unknown, _ = model.rank(["rock"], np.array([[10**6, -1, 10**9]]), 20)
    ids_name, _ = model.rank(["rock"], np.array([[-1]]), 20)
    np.testing.assert_array_equal(ids_unknown, ids_name)


def test_two_tower_beats_popularity_on_names_and_matches_cooccurrence_with_tracks(planted: Planted, trained) -> None:
    path, _ = trained
    model = load_two_tower(path)
    indptr, tracks, _ = planted.part(cont.TRAIN)
    train = cont.playlist_track_matrix(indptr, tracks, planted.n_tracks)
    known = np.asarray(train.sum(axis=0)).ravel() > 0
    test = ch.build_challenge_set(planted.indptr, planted.tracks, planted.split == cont.TEST, known, 0,
                                  per_category=0, min_queries=1)
    rankers = ch.baseline_rankers(train, k=20, als=None)  # 20 of 240 tracks: 500 would list them all
    rankers["two_tower"] = ch.model_ranker(model, planted.names, k=20)
    rows = {(r["category"], r["model"]): r["ndcg"]
            for r in ch.evaluate_models(rankers, test, planted.features.artist, k=20)}
    assert rows[("title only", "two_tower")] > 2 * rows[("title only", "popularity")]
    assert rows[("title + first 5", "two_tower")] > rows[("title + first 5", "cooccurrence")] - 0.05


def test_two_tower_same_seed_same_weights(planted: Planted, tmp_path: Path) -> None:
    small = Planted(playlists=200, seed=1)
    config = replace(FAST, max_epochs=2)
    first = train_planted(small, tmp_path / "a.pt", config, val=False)
    train_planted(small, tmp_path / "b.pt", config, val=False)
    train_planted(small, tmp_path / "c.pt", replace(config, seed=1), val=False)
    a, b, c = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["state_dict"] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["track_id.weight"], c["track_id.weight"])
    assert first.best_epoch == 1 and np.isnan(first.best_val_ndcg)  # no val set: the last epoch is kept


def test_checkpoint_is_plain_weights_written_atomically(trained, tmp_path: Path) -> None:
    path, _ = trained
    payload = torch.load(path, weights_only=True)  # no pickled code: tensors and plain values only
    assert payload["format"] == CHECKPOINT_FORMAT
    assert len(payload["catalogue"]["track_uri"]) == payload["vocab_track_ids"].numel()
    assert not list(path.parent.glob(f".{path.name}.*.tmp"))
    model = load_two_tower(path)
    again = load_two_tower(path)
    np.testing.assert_array_equal(model.rank(["rock"], np.array([[3]]), 30)[0],
                                  again.rank(["rock"], np.array([[3]]), 30)[0])
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match="not a spotify_assets.two_tower"):
        load_two_tower(bad)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TwoTowerConfig(batch_size=0)
    with pytest.raises(ValueError, match="title_dropout"):
        TwoTowerConfig(title_dropout=1.5)
    with pytest.raises(ValueError, match="context_sizes"):
        TwoTowerConfig(context_sizes=())


# --------------------------------------------------------------------------------------
# no held-out playlist trains any model
# --------------------------------------------------------------------------------------


def test_held_out_playlists_train_no_model(tmp_path: Path) -> None:
    """A canary track sits in every val and test playlist and in no training playlist. A
    model that saw held-out playlists would recommend it (the leaky controls below do);
    none of the evaluated models may."""
    data = Planted(playlists=400, seed=2, extra_tracks=1)
    canary = data.n_tracks - 1
    lengths = np.diff(data.indptr)
    parts, held_out = [], data.split != cont.TRAIN
    for p in range(lengths.size):
        own = data.tracks[data.indptr[p]:data.indptr[p + 1]]
        parts.append(np.r_[own, canary] if held_out[p] else own)
    data.tracks = np.concatenate(parts)
    data.indptr = np.r_[0, np.cumsum(lengths + held_out)].astype(np.int64)
    indptr, tracks, names = data.part(cont.TRAIN)
    assert canary not in tracks
    train = cont.playlist_track_matrix(indptr, tracks, data.n_tracks)
    result = train_planted(data, tmp_path / "two_tower.pt", replace(FAST, max_epochs=3))
    model = load_two_tower(result.checkpoint)
    vocab = build_vocabulary(tracks, data.n_tracks, 1)
    i2v = train_item2vec(indptr, vocab.encode(tracks), vocab.counts, Item2VecConfig(dim=8, epochs=1))
    rankers = ch.baseline_rankers(train, k=20, item2vec=(l2_normalize(i2v.vectors), vocab.track_ids),
                                  als=ch.ALSSettings(factors=8, iterations=3))
    rankers["two_tower"] = ch.model_ranker(model, data.names, k=20)
    everything = np.ones(data.n_tracks, bool)  # the canary counts as a held-out track here
    test = ch.build_challenge_set(data.indptr, data.tracks, data.split == cont.TEST, everything, 0, per_category=0,
                                  min_queries=1)
    assert (test.truth == canary).sum() >= test.size // 2  # it is there to be found
    for name, rank in rankers.items():
        assert not (rank(test) == canary).any(), f"{name} recommends a track only held-out playlists have"
    assert canary not in model.vocab_track_ids
    # the control: popularity counted over every playlist recommends the canary
    leaky = ch.baseline_rankers(cont.playlist_track_matrix(data.indptr, data.tracks, data.n_tracks), k=20, als=None)
    assert (leaky["popularity"](test) == canary).any(axis=1).mean() > 0.5


def test_als_queries_are_folded_in_one_by_one(planted: Planted) -> None:
    """ALS fits on train only; a query's list must not depend on the other queries (when all
    categories' seed rows were appended to the fit, a playlist's 25 random seeds taught the
    item factors the held-out tracks of its title + first 1 query)."""
    indptr, tracks, _ = planted.part(cont.TRAIN)
    train = cont.playlist_track_matrix(indptr, tracks, planted.n_tracks)
    seeds = np.array([[1, 2, -1], [61, -1, -1], [5, 125, 190]])
    together = cont.als_rank(train, seeds, 30, factors=8, iterations=5)
    for q in range(seeds.shape[0]):
        np.testing.assert_array_equal(cont.als_rank(train, seeds[q:q + 1], 30, factors=8, iterations=5)[0],
                                      together[q])
    empty = cont.als_rank(train, np.full((1, 3), -1), 30, factors=8, iterations=5)
    np.testing.assert_array_equal(empty, cont.popularity_rank(np.asarray(train.sum(axis=0)).ravel(),
                                                               np.full((1, 3), -1), 30))
