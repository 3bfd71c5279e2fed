"""Playlists and users: who holds which tracks or songs, drawn block by block.

Each playlist or user has a primary (and maybe a secondary) genre and draws most of its
distinct items from them (:func:`_sample_sets`); lengths, song counts and play counts
follow the distributions set in :class:`~spotify_assets.synth.params.SynthParams`. Every
block of playlists or users has its own random stream (:func:`_block_rng`).
"""

from __future__ import annotations

import math

import numpy as np

from spotify_assets.synth.catalogue import Catalogue, _Sampler
from spotify_assets.synth.params import _S_PLAYLISTS, SynthParams
from spotify_assets.synth.text import _NAME_DECOR


def _genres(rng: np.random.Generator, n: int, genre_weight: np.ndarray, p_second: float) -> tuple[np.ndarray, np.ndarray]:
    G = genre_weight.shape[0]
    g1 = rng.choice(G, size=n, p=genre_weight)
    g2 = rng.choice(G, size=n, p=genre_weight)
    same = g2 == g1
    g2[same] = (g2[same] + 1 + rng.integers(0, max(G - 1, 1), int(same.sum()))) % G if G > 1 else -1
    g2 = np.where(rng.random(n) < p_second, g2, -1)
    return g1.astype(np.int64), g2.astype(np.int64)


def _sample_sets(rng: np.random.Generator, sampler: _Sampler, counts: np.ndarray, g1: np.ndarray,
                 g2: np.ndarray, p_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per entity: ``counts[i]`` items for entity ``i``.

    Each draw comes from the entity's primary genre (or its secondary, when it has one)
    with probability ``p_in[i]``, else from the global popularity mix. Draws are repeated
    until every entity holds ``counts[i]`` distinct items (later rounds lean on the global
    mix so that small genres cannot stall); the result is shuffled within each entity.

    Returns
    -------
    owner, item : int64 arrays of equal length, grouped by owner (ascending).
    """
    n = counts.shape[0]
    counts = np.minimum(counts, sampler.n_items)
    keys = np.empty(0, np.int64)
    n_items = np.int64(sampler.n_items)
    have = np.zeros(n, np.int64)
    for round_ in range(12):
        need = counts - have
        if not np.any(need > 0):
            break
        who = np.flatnonzero(need > 0)
        factor = 1.25 if round_ == 0 else 2.0
        m = np.ceil(need[who] * factor).astype(np.int64) + 2
        owner = np.repeat(who, m)
        k = owner.shape[0]
        local = rng.random(k) < p_in[owner] * (0.5**round_ if round_ >= 2 else 1.0)
        use_second = (g2[owner] >= 0) & (rng.random(k) < 0.4)
        genre = np.where(use_second, g2[owner], g1[owner])
        genre = np.where(local, genre, -1)
        items = sampler.draw(genre, rng.random(k))
        new = owner * n_items + items
        allk = np.r_[keys, new]
        _, first = np.unique(allk, return_index=True)
        first.sort()
        allk = allk[first]
        own = allk // n_items
        srt = np.argsort(own, kind="stable")
        allk, own = allk[srt], own[srt]
        start = np.searchsorted(own, np.arange(n))
        rank = np.arange(own.shape[0]) - start[own]
        keep = rank < counts[own]
        keys = allk[keep]
        have = np.bincount(keys // n_items, minlength=n)
    owner = keys // n_items
    item = keys % n_items
    shuffle = np.lexsort((rng.random(owner.shape[0]), owner))
    return owner[shuffle], item[shuffle]


def _in_genre(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Per-entity in-genre share ~ Beta with the given mean (concentration 17)."""
    if mean >= 1.0 or mean <= 0.0:
        return np.full(n, mean)
    return rng.beta(17.0 * mean, 17.0 * (1.0 - mean), n)


def _user_counts(rng: np.random.Generator, n: int, params: SynthParams, n_songs: int) -> np.ndarray:
    mu = math.log(params.user_songs_median)
    sigma = math.sqrt(2.0 * math.log(params.user_songs_mean / params.user_songs_median))
    cap = max(1, min(5_000, n_songs // 3))
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, cap).astype(np.int64)


def _playlist_lengths(rng: np.random.Generator, n: int, params: SynthParams, n_tracks: int) -> np.ndarray:
    length = np.rint(rng.lognormal(math.log(params.playlist_len_median), params.playlist_len_sigma, n))
    return np.clip(length, 5, min(250, n_tracks)).astype(np.int64)


def _play_counts(rng: np.random.Generator, n: int, params: SynthParams) -> np.ndarray:
    return np.minimum(rng.zipf(params.play_count_zipf, n), 9_667).astype(np.int64)


def _block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block)))


def _playlist_block(cat: Catalogue, params: SynthParams, seed: int, block: int,
                    n: int) -> dict[str, np.ndarray]:
    """Draw ``n`` playlists of block ``block`` (pids ``block * PLAYLIST_BLOCK + i``)."""
    rng = _block_rng(seed, _S_PLAYLISTS, block)
    lengths = _playlist_lengths(rng, n, params, cat.track_sampler.n_items)
    g1, g2 = _genres(rng, n, cat.genre_weight, params.second_genre_prob)
    p_in = _in_genre(rng, n, params.in_genre_share)
    owner, item = _sample_sets(rng, cat.track_sampler, lengths, g1, g2, p_in)
    return {
        "lengths": np.bincount(owner, minlength=n), "g1": g1, "g2": g2, "owner": owner, "item": item,
        "name_pick": rng.integers(0, 1 << 30, n), "name_style": rng.random(n),
        "decor": rng.integers(0, len(_NAME_DECOR), n), "generic": rng.random(n),
        "desc": rng.random(n), "collab": rng.random(n),
        # Day-truncated like the real MPD, 2010-01-01 .. 2017-10-31.
        "modified_at": 1_262_304_000 + rng.integers(0, 2_860, n) * 86_400,
        "followers": np.minimum(rng.zipf(2.2, n), 50_000),
        "edits": np.minimum(rng.zipf(1.6, n), 300) + rng.integers(0, 20, n),
    }
