"""Song keys: the normalization and version-suffix rules (see spotify_assets.prepare.songkeys)."""

import pytest

from spotify_assets.prepare.songkeys import (
    canonical_song_key,
    canonical_song_keys,
    is_empty_key,
    plain_song_key,
    plain_song_keys,
)


def test_plain_key_normalizes_unicode_case_and_spaces() -> None:
    assert plain_song_key("  Get   Lucky ", "DAFT  PUNK") == "get lucky@@daft punk"
    # NFKC folds compatibility forms (full-width letters, ligatures)
    assert plain_song_key("Ｈｅｌｌｏ", "ﬁve") == "hello@@five"
    assert plain_song_key(None, None) == "@@"
    # the plain key keeps accents and suffixes
    assert plain_song_key("Déjà Vu - Radio Edit", "Beyoncé") == "déjà vu - radio edit@@beyoncé"


@pytest.mark.parametrize(
    "variant",
    [
        "Get Lucky - Radio Edit",
        "Get Lucky - Remastered 2011",
        "Get Lucky- Remastered 2011",
        "Get Lucky - Remastered",
        "Get Lucky (Remastered 2011)",
        "Get Lucky - Original Mix",
        "Get Lucky (Radio Edit)",
        "Get Lucky - Live at Wembley",
        "Get Lucky (ft. Pharrell)",
        "Get Lucky - 2011 Remaster",
        "Get Lucky (feat. Pharrell Williams)",
        "Get Lucky [ft. Pharrell]",
        "Get Lucky feat. Pharrell Williams",
        "Get Lucky - Live",
        "Get Lucky - Single Version",
        "Get Lucky (feat. Pharrell) - Remastered 2013",
        "GET  LUCKY",
        "Gét Lucky",
    ],
)
def test_canonical_key_merges_versions(variant: str) -> None:
    assert canonical_song_key(variant, "Daft Punk") == canonical_song_key("Get Lucky", "Daft Punk")


def test_canonical_key_keeps_remixes_and_distinct_songs_apart() -> None:
    base = canonical_song_key("Get Lucky", "Daft Punk")
    assert canonical_song_key("Get Lucky (Daft Punk Remix)", "Daft Punk") != base
    assert canonical_song_key("Get Lucky (Remix)", "Daft Punk") == "get lucky (remix)@@daft punk"
    assert canonical_song_key("Get Lucky - Club Mix", "Daft Punk") != base
    assert canonical_song_key("Get Lucky - Remix Version", "Daft Punk") != base
    assert canonical_song_key("Re-Live", "X") == "re-live@@x"  # a hyphen inside a word is no suffix
    assert canonical_song_key("Get Luckier", "Daft Punk") != base
    assert canonical_song_key("Get Lucky", "Daft Punk feat. Pharrell") == base
    assert canonical_song_key("Get Lucky", "Other Artist") != base


def test_canonical_key_never_empties_a_title_made_only_of_a_suffix() -> None:
    assert canonical_song_key("Live", "X").startswith("live@@")


def test_missing_values_key_to_empty_parts_and_other_types_raise() -> None:
    assert plain_song_key(None, "A") == "@@a" and canonical_song_key(float("nan"), None) == "@@"
    assert is_empty_key(plain_song_key("", None)) and not is_empty_key(plain_song_key("x", None))
    with pytest.raises(TypeError, match="str or None"):
        plain_song_key(12, "A")


def test_column_helpers_equal_the_scalar_functions() -> None:
    titles = ["Song - Radio Edit", "Song", None, "Café (feat. X)", "Song - Radio Edit"]
    artists = ["A", "a ", "B", "Beyoncé", "A"]
    assert plain_song_keys(titles, artists) == [plain_song_key(t, a) for t, a in zip(titles, artists)]
    assert canonical_song_keys(titles, artists) == [canonical_song_key(t, a) for t, a in zip(titles, artists)]
    assert canonical_song_keys(iter(titles), iter(artists))[0] == "song@@a"
    with pytest.raises(ValueError, match="titles but"):
        plain_song_keys(["a"], [])
