"""Song keys: the normalization and version-suffix rules of DESIGN §3."""

import pytest

from spotify_assets.songkeys import canonical_song_key, plain_song_key


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
        "Get Lucky - Remastered",
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
    assert canonical_song_key("Get Luckier", "Daft Punk") != base
    assert canonical_song_key("Get Lucky", "Daft Punk feat. Pharrell") == base
    assert canonical_song_key("Get Lucky", "Other Artist") != base


def test_canonical_key_never_empties_a_title_made_only_of_a_suffix() -> None:
    assert canonical_song_key("Live", "X").startswith("live@@")
