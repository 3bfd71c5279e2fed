"""Words and names: genre vocabulary, titles, artist and album names, spelling variants.

Pure string making (given a ``numpy`` generator where a draw is needed): the genre table
whose playlist names hint the genre, the word slots titles are built from, the artist-name
styles, and the variant spellings (" - Radio Edit", " (feat. X)", case, accents, spaces)
under which a song appears on the MPD or the MSD side.
"""

from __future__ import annotations

import unicodedata

import numpy as np


#: (label, playlist names hinting the genre). Names are unique across genres.
GENRES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pop", ("pop", "pop hits", "top 40", "pop bangers")),
    ("chill", ("chill vibes", "chill", "relax", "lazy sunday", "chillin")),
    ("workout", ("workout", "gym", "running", "pump up", "cardio")),
    ("country", ("country roads", "country", "honky tonk", "backroads")),
    ("throwbacks", ("throwbacks", "throwback jams", "old school", "nostalgia")),
    ("hip hop", ("hip hop", "rap", "bars", "hip hop hits")),
    ("rock", ("rock", "classic rock", "rock n roll", "guitar heroes")),
    ("indie", ("indie", "indie vibes", "indie mix", "hipster")),
    ("edm", ("edm", "rave", "festival", "bass drops")),
    ("r&b", ("r&b", "rnb", "slow jams", "smooth r&b")),
    ("latin", ("latin", "reggaeton", "fiesta latina", "latino")),
    ("jazz", ("jazz", "jazz night", "smooth jazz", "jazzy")),
    ("classical", ("classical", "piano", "orchestra", "mozart & co")),
    ("metal", ("metal", "heavy metal", "headbang", "mosh pit")),
    ("party", ("party", "party time", "pregame", "turn up")),
    ("sad", ("sad", "sad songs", "heartbreak", "feels")),
    ("love", ("love songs", "love", "romance", "date night")),
    ("christmas", ("christmas", "xmas", "holiday", "winter wonderland")),
    ("worship", ("worship", "gospel", "praise", "sunday service")),
    ("summer", ("summer", "summer vibes", "beach", "sunshine")),
    ("road trip", ("road trip", "roadtrip", "drive", "car songs")),
    ("sleep", ("sleep", "bedtime", "lullabies", "night night")),
    ("punk", ("punk", "pop punk", "punk rock", "skate punk")),
    ("emo", ("emo", "emo nite", "emo forever", "scene")),
    ("folk", ("folk", "indie folk", "folksy", "campfire")),
    ("blues", ("blues", "delta blues", "blues night", "bluesy")),
    ("soul", ("soul", "soulful", "neo soul", "old soul")),
    ("funk", ("funk", "funky", "groove", "get down")),
    ("reggae", ("reggae", "island vibes", "roots reggae", "irie")),
    ("disco", ("disco", "disco fever", "boogie", "studio 54")),
    ("house", ("house", "deep house", "house music", "tech house")),
    ("techno", ("techno", "berlin", "warehouse", "minimal")),
    ("dubstep", ("dubstep", "wubs", "brostep", "drops")),
    ("trap", ("trap", "trap music", "trap bangers", "lit")),
    ("k-pop", ("kpop", "k-pop", "bias", "idols")),
    ("90s", ("90s", "90's", "nineties", "90s kids")),
    ("80s", ("80s", "80's", "eighties", "80s hits")),
    ("2000s", ("2000s", "00s", "early 2000s", "y2k")),
    ("70s", ("70s", "70's", "seventies", "groovy 70s")),
    ("disney", ("disney", "disney jams", "princess songs", "disney channel")),
    ("broadway", ("broadway", "musicals", "show tunes", "hamilton")),
    ("soundtrack", ("soundtrack", "movie music", "film scores", "ost")),
    ("lofi", ("lofi", "lo-fi beats", "lofi hip hop", "beats to relax")),
    ("acoustic", ("acoustic", "unplugged", "acoustic covers", "coffeehouse")),
    ("alternative", ("alternative", "alt rock", "alternative rock", "modern rock")),
    ("grunge", ("grunge", "seattle", "flannel", "90s grunge")),
    ("ska", ("ska", "ska punk", "skank", "third wave")),
    ("bluegrass", ("bluegrass", "banjo", "mountain music", "appalachia")),
    ("americana", ("americana", "alt country", "heartland", "dust")),
    ("motown", ("motown", "oldies", "doo wop", "60s soul")),
    ("afrobeats", ("afrobeats", "afro", "naija", "afrobeat")),
    ("dancehall", ("dancehall", "riddim", "bashment", "yardie")),
    ("bachata", ("bachata", "merengue", "bachata romantica", "dominicana")),
    ("j-pop", ("jpop", "anime", "j-pop", "anisong")),
    ("kids", ("kids", "kids songs", "family", "children")),
    ("rainy day", ("rainy day", "rain", "cloudy", "gloomy")),
    ("study", ("study", "studying", "focus", "homework")),
    ("coffee", ("coffee", "morning coffee", "cafe", "brunch")),
    ("wedding", ("wedding", "first dance", "reception", "bridal")),
    ("cleaning", ("cleaning", "chores", "clean the house", "tidy")),
    ("karaoke", ("karaoke", "sing along", "singalong", "belt it")),
    ("hardcore", ("hardcore", "metalcore", "breakdowns", "hxc")),
    ("screamo", ("screamo", "post-hardcore", "scream", "warped tour")),
    ("synthwave", ("synthwave", "retrowave", "outrun", "neon nights")),
    ("trance", ("trance", "uplifting trance", "trance anthems", "euphoria")),
    ("drum and bass", ("drum and bass", "dnb", "jungle", "liquid")),
    ("ambient", ("ambient", "soundscapes", "drone", "atmospheric")),
    ("instrumental", ("instrumental", "no lyrics", "instrumentals", "post rock")),
    ("gaming", ("gaming", "video game music", "gamer", "boss battle")),
    ("spanish", ("en español", "spanish", "musica", "mix latino")),
    ("french", ("french", "chanson", "paris", "musique")),
    ("german", ("german", "deutsch", "schlager", "deutschrap")),
    ("italian", ("italian", "italia", "canzoni", "amore")),
    ("brazil", ("brazil", "bossa nova", "samba", "brasil")),
    ("tropical", ("tropical", "tropical house", "island", "paradise")),
    ("halloween", ("halloween", "spooky", "creepy", "scary")),
    ("girl power", ("girl power", "queens", "boss", "divas")),
    ("bro country", ("bro country", "tailgate", "truck", "beer")),
    ("chillhop", ("chillhop", "jazzhop", "late night beats", "study beats")),
    ("oldies", ("50s", "60s", "golden oldies", "classics")),
    ("festival", ("coachella", "lollapalooza", "bonnaroo", "glasto")),
    ("throwback rap", ("old school rap", "90s rap", "golden era", "boom bap")),
    ("yoga", ("yoga", "meditation", "zen", "mindfulness")),
    ("motivation", ("motivation", "hype", "get hyped", "beast mode")),
    ("sunset", ("sunset", "golden hour", "dusk", "evening")),
    ("late night", ("late night", "3am", "after hours", "night drive")),
    ("dance", ("dance", "dance party", "dancing", "dance floor")),
    ("sexy", ("sexy", "baby making", "bedroom", "sensual")),
    ("shower", ("shower", "shower songs", "shower jams", "bathroom")),
    ("gym rap", ("gym rap", "lifting", "deadlift", "gains")),
    ("country love", ("country love", "country love songs", "cowboy romance", "barn dance")),
    ("grime", ("grime", "uk rap", "drill", "uk drill")),
    ("garage", ("uk garage", "2 step", "garage", "speed garage")),
    ("swing", ("swing", "big band", "lindy", "crooners")),
    ("opera", ("opera", "arias", "bel canto", "operatic")),
    ("new wave", ("new wave", "synthpop", "post punk", "darkwave")),
    ("psychedelic", ("psychedelic", "psych", "trippy", "acid")),
    ("shoegaze", ("shoegaze", "dream pop", "reverb", "wall of sound")),
    ("singer songwriter", ("singer songwriter", "songwriters", "storytellers", "troubadour")),
)

#: Names with no genre hint (real MPD has plenty of these).
_GENERIC_NAMES = ("my playlist", "songs", "new playlist", "favorites", "mix", "music", "good stuff",
                  "jams", "car", "stuff", "random", "liked", "playlist", "faves", "tunes")
_NAME_DECOR = ("", "", "", "", "", " 🔥", " ☀️", " 🎶", "!!", " 2017", " 2016", " mix", "  ")
_DESCRIPTIONS = ("songs for {}", "my {} playlist", "{} all day", "the best {} songs", "{}. enough said.")

_TITLE_A = ("", "Oh,", "Hey,", "Baby,", "My", "Your", "Our", "This", "That", "No More",
            "Don't Stop", "Take Me to the", "Beyond the", "Into the", "Dancing in the",
            "Lost in the", "Say Hello to the", "Never Mind the", "Waiting for the", "I Love the")
_TITLE_B = ("", "Golden", "Silver", "Electric", "Broken", "Burning", "Wild", "Lonely", "Crazy",
            "Sweet", "Blue", "Red", "Midnight", "Summer", "Winter", "Neon", "Silent", "Hollow",
            "Falling", "Velvet", "Crystal", "Paper", "Stone", "Secret", "Endless", "Little", "Big",
            "Dirty", "Pretty", "Lazy", "Holy", "Cosmic", "Faded", "Frozen", "Heavy", "Easy", "Dark",
            "Bright", "Slow", "Fast", "Lucky", "Savage", "Tender", "Restless", "Sunday", "Friday",
            "Cold", "Hot", "Bitter", "Naïve")
_TITLE_C = ("Heart", "River", "Night", "Fire", "Rain", "Dream", "Road", "Love", "Light", "Sky",
            "Moon", "Sun", "Stars", "Ocean", "City", "Girl", "Boy", "World", "Home", "Time",
            "Soul", "Mind", "Eyes", "Hands", "Kiss", "Dance", "Song", "Heaven", "Paradise", "Angel",
            "Ghost", "Shadow", "Thunder", "Lightning", "Storm", "Wind", "Summertime", "Morning",
            "Evening", "Sunrise", "Sunset", "Highway", "Train", "Car", "Bridge", "Garden", "Rose",
            "Diamond", "Gold", "Money", "Queen", "King", "Child", "Mother", "Father", "Brother",
            "Sister", "Friend", "Lover", "Stranger", "Hero", "Villain", "Devil", "Saint", "Sinner",
            "Wolf", "Tiger", "Bird", "Butterfly", "Horse", "Lion", "Snake", "Mountain", "Valley",
            "Desert", "Island", "Beach", "Wave", "Tide", "Echo", "Silence", "Noise", "Radio",
            "Television", "Telephone", "Letter", "Story", "Secret Place", "Memory", "Promise",
            "Lie", "Truth", "Chance", "Game", "Party", "Club", "Bar", "Street", "Avenue",
            "Boulevard", "Window", "Door", "Room", "Bed", "Mirror", "Picture", "Photograph",
            "Candle", "Flame", "Smoke", "Ashes", "Dust", "Bones", "Blood", "Tears", "Smile",
            "Laughter", "Wonder", "Magic", "Miracle", "Mystery", "Machine", "Robot", "Rocket",
            "Satellite", "Planet", "Galaxy", "Universe", "Café", "Mañana", "Corazón", "Señorita",
            "Niña", "Déjà Vu", "Fiancée", "Piñata", "Jalapeño", "Soirée", "Façade", "Crème Brûlée",
            "Nothin'", "Rock 'n' Roll", '"Heroes"', '"Paradise Lost"', "Sugar", "Honey", "Cherry",
            "Lemonade", "Whiskey", "Wine", "Champagne", "Coffee", "Cigarettes", "Medicine")
_TITLE_D = ("", "Tonight", "Again", "Forever", "Tomorrow", "in the Rain", "of Mine", "on Fire",
            "Pt. 2", "(Interlude)", "(Reprise)", "Blues", "Anthem", "Lullaby", "Serenade", "Ballad",
            "Theme", "No. 5", ", Baby", ", Pt. 1", "in Paris", "in My Head", "All Night", "Goodbye",
            "Hello", "Is Calling", "Never Dies", "Rising", "Returns", "Again and Again",
            "(Acoustic)", "for You", "Tonite", "Away", "at Last", "Underground", "Overdrive",
            "Revolution", "Parade", "Medley")

_FIRST = ("Alex", "Sam", "Jamie", "Taylor", "Jordan", "Casey", "Riley", "Morgan", "Avery", "Quinn",
          "Billy", "Johnny", "Bobby", "Tommy", "Jimmy", "Danny", "Frankie", "Charlie", "Eddie",
          "Ella", "Grace", "Ruby", "Lily", "Hazel", "Ivy", "Mae", "Rose", "June", "Nina", "Lola",
          "Marcus", "Isaac", "Owen", "Caleb", "Miles", "Otis", "Ray", "Nat", "Etta", "Aretha",
          "José", "Zoë", "Chloé", "Renée", "Andrés", "Inés", "Joaquín", "Björn", "Søren",
          "François", "Noël", "Léa", "Raúl", "Sinéad", "Maëlle", "Agnès", "Jürgen", "Ángel",
          "Lucía", "Mónica", "Tomás", "Elías", "Héctor", "Dolores", "Mateo", "Luca", "Kenji",
          "Yuki", "Amara", "Kofi", "Zara", "Priya", "Arjun", "Leila", "Omar", "Sasha", "Dmitri",
          "Anya", "Ingrid", "Lars")
_LAST = ("Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Moore", "Clark", "Lewis",
         "Walker", "Hall", "Young", "King", "Wright", "Hill", "Green", "Baker", "Carter", "Turner",
         "Parker", "Collins", "Stewart", "Morris", "Rogers", "Cooper", "Reed", "Bell", "Ward",
         "Brooks", "Gray", "James", "Watson", "Price", "Bennett", "Wood", "Barnes", "Ross",
         "Jenkins", "Perry", "Long", "García", "Muñoz", "Pérez", "Müller", "Åström", "Löwe",
         "Dubois", "Fernández", "González", "Rodríguez", "Martínez", "Jiménez", "Ibáñez",
         "Søndergaard", "Björklund", "Lefèvre", "Bélanger", "Côté", "Núñez", "Peña", "Rossi",
         "Bianchi", "Romano", "Silva", "Santos", "Costa", "Tanaka", "Sato", "Kim", "Park",
         "Nguyen", "Okafor", "Mensah", "Haddad", "Novak", "Kowalski", "Ivanov", "Larsen",
         "Jensen", "Berg", "Moreau")
_BAND_NOUNS = ("Wolves", "Strangers", "Kings", "Queens", "Ghosts", "Lovers", "Rebels", "Saints",
               "Sinners", "Angels", "Tigers", "Foxes", "Ravens", "Crows", "Horses", "Lions",
               "Machines", "Robots", "Astronauts", "Pilots", "Sailors", "Drifters", "Wanderers",
               "Dreamers", "Believers", "Outlaws", "Brothers", "Sisters", "Daughters", "Sons",
               "Hearts", "Bones", "Stones", "Diamonds", "Roses", "Flowers", "Waves", "Tides",
               "Echoes", "Shadows", "Lights", "Stars", "Comets", "Rockets", "Satellites", "Planets",
               "Giants", "Kids", "Twins", "Cousins", "Neighbors", "Friends", "Villains", "Heroes",
               "Monsters", "Vampires", "Zombies", "Witches", "Wizards", "Prophets")
_CONSONANTS = "bdfgklmnprstvzjy"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # fixed length 2: uniquely decodable
_ALBUM_EXTRA = ("Greatest Hits", "The Best Of", "Deluxe Edition", "Anthology", "Essentials",
                "Collection", "Gold", "Hits", "Live at the Garden", "B-Sides")

#: Spelling variants of a matched song on the MPD side (truth label per code).
VARIANT_NAMES = ("exact", "radio_edit", "feat", "remaster", "case", "accents", "spaces", "live",
                 "feat_msd")
_VARIANT_WEIGHTS = np.array([0.0, 0.18, 0.12, 0.15, 0.15, 0.12, 0.12, 0.08, 0.08])
ARTIST_VARIANT_NAMES = ("exact", "case", "accents", "and", "spaces")


def strip_accents(text: str) -> str:
    """``text`` with combining marks removed (``"Beyoncé"`` → ``"Beyonce"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


_ACCENT_ADD = str.maketrans({"e": "é", "a": "á", "o": "ó", "i": "í", "u": "ú"})


def _add_accent(text: str) -> str:
    """Put an accent on the first vowel after the first character (unchanged if none)."""
    for i, ch in enumerate(text[1:], start=1):
        if ch in "eaoiu":
            return text[:i] + ch.translate(_ACCENT_ADD) + text[i + 1:]
    return text


def _double_space(text: str) -> str:
    i = text.find(" ")
    return text.replace(" ", "  ", 1) if i > 0 else text + " "


def _title_strings(codes: np.ndarray) -> list[str]:
    """Titles from mixed-radix codes over four disjoint word slots (unique per code)."""
    nb, nc, nd = len(_TITLE_B), len(_TITLE_C), len(_TITLE_D)
    d = codes % nd
    c = (codes // nd) % nc
    b = (codes // (nd * nc)) % nb
    a = codes // (nd * nc * nb)
    out = []
    for ai, bi, ci, di in zip(a.tolist(), b.tolist(), c.tolist(), d.tolist()):
        parts = [p for p in (_TITLE_A[ai], _TITLE_B[bi], _TITLE_C[ci]) if p]
        text = " ".join(parts)
        tail = _TITLE_D[di]
        if tail:
            text = text + tail if tail.startswith(",") else f"{text} {tail}"
        out.append(text)
    return out


def _title_capacity() -> int:
    return len(_TITLE_A) * len(_TITLE_B) * len(_TITLE_C) * len(_TITLE_D)


def _title_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct title codes, biased towards short titles (empty optional slots).

    Short forms run out first (there are only ``len(_TITLE_C)`` one-word titles); each
    round weakens the bias so that large catalogues fill up with longer titles.
    """
    na, nb, nc, nd = len(_TITLE_A), len(_TITLE_B), len(_TITLE_C), len(_TITLE_D)
    codes = np.empty(0, np.int64)
    p_a, p_b, p_d = 0.7, 0.35, 0.7  # probability that the optional slot stays empty
    while codes.shape[0] < n:
        m = int((n - codes.shape[0]) * 1.5) + 64
        a = np.where(rng.random(m) < p_a, 0, rng.integers(1, na, m))
        b = np.where(rng.random(m) < p_b, 0, rng.integers(1, nb, m))
        c = rng.integers(0, nc, m)
        d = np.where(rng.random(m) < p_d, 0, rng.integers(1, nd, m))
        allc = np.r_[codes, ((a * nb + b) * nc + c) * nd + d]
        _, first = np.unique(allc, return_index=True)
        codes = allc[np.sort(first)][:n]
        p_a, p_b, p_d = p_a * 0.7, p_b * 0.7, p_d * 0.7
    return codes


def _two_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` album-like names "<Adjective> <Noun>" (repeats allowed, as in real catalogues)."""
    adj = rng.integers(1, len(_TITLE_B), n).tolist()
    noun = rng.integers(0, len(_TITLE_C), n).tolist()
    return [f"{_TITLE_B[a]} {_TITLE_C[b]}" for a, b in zip(adj, noun)]


def _artist_strings(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct artist names in several styles (person, band, invented word)."""
    syl = len(_SYLLABLES)
    forms = [
        ("person", len(_FIRST) * len(_LAST), 0.30),
        ("band", (len(_TITLE_B) - 1) * len(_BAND_NOUNS), 0.15),
        ("word", syl**3, 0.30),
        ("dj", 3 * syl**2, 0.05),
        ("first_word", len(_FIRST) * syl**3, 0.20),
    ]
    want = rng.multinomial(n, [p for _, _, p in forms])
    counts = []
    overflow = 0
    for (name, cap, _), w in zip(forms, want):
        take = min(int(w), cap)
        overflow += int(w) - take
        counts.append(take)
    counts[-1] += overflow  # the largest form absorbs what the small ones cannot hold
    names: list[str] = []
    for (form, cap, _), count in zip(forms, counts):
        picks = rng.choice(cap, size=count, replace=False) if count else np.empty(0, np.int64)
        for p in picks.tolist():
            if form == "person":
                names.append(f"{_FIRST[p // len(_LAST)]} {_LAST[p % len(_LAST)]}")
            elif form == "band":
                adj = _TITLE_B[1 + p // len(_BAND_NOUNS)]
                names.append(f"The {adj} {_BAND_NOUNS[p % len(_BAND_NOUNS)]}")
            elif form == "word":
                names.append((_SYLLABLES[p // syl**2] + _SYLLABLES[(p // syl) % syl] + _SYLLABLES[p % syl]).capitalize())
            elif form == "dj":
                pre = ("DJ", "Lil", "MC")[p // syl**2]
                names.append(f"{pre} {(_SYLLABLES[(p // syl) % syl] + _SYLLABLES[p % syl]).capitalize()}")
            else:
                q = p % syl**3
                word = (_SYLLABLES[q // syl**2] + _SYLLABLES[(q // syl) % syl] + _SYLLABLES[q % syl]).capitalize()
                names.append(f"{_FIRST[p // syl**3]} {word}")
    order = rng.permutation(len(names))
    names = [names[i] for i in order.tolist()]
    # Forms can collide after case folding ("Lars Berg" vs a first+word name): rename.
    seen: set[str] = set()
    for i, name in enumerate(names):
        key = name.casefold()
        extra = 2
        while key in seen:
            name = f"{names[i]} {['II', 'III', 'IV', 'V', 'VI', 'VII'][min(extra - 2, 5)]}{'' if extra < 8 else extra}"
            key = name.casefold()
            extra += 1
        seen.add(key)
        names[i] = name
    return names


def _artist_variant(name: str, kind: int) -> str:
    if kind == 1:
        return name.upper() if len(name) < 12 else name.lower()
    if kind == 2:
        stripped = strip_accents(name)
        return stripped if stripped != name else _add_accent(name)
    if kind == 3:
        return name.replace("The ", "", 1) if name.startswith("The ") else f"{name} & Friends"
    if kind == 4:
        return _double_space(name)
    return name


def _title_variant(title: str, kind: int, feat: str, year: int) -> tuple[str, str, int]:
    """(MPD spelling, MSD spelling, kind applied) of a title under variant ``kind``.

    ``year`` doubles as a coin for the sub-forms. An accent variant of a title with no
    vowel to accent falls back to a case variant (the kind returned says which).
    """
    if kind == 5 and strip_accents(title) == title and _add_accent(title) == title:
        kind = 4
    if kind == 1:
        return f"{title} - Radio Edit", title, kind
    if kind == 2:
        return f"{title} (feat. {feat})", title, kind
    if kind == 3:
        return (f"{title} - Remastered {year}" if year % 4 else f"{title} - Remastered"), title, kind
    if kind == 4:
        return (title.lower() if year % 3 else title.upper()), title, kind
    if kind == 5:
        stripped = strip_accents(title)
        # The MSD is often ASCII-folded; a title without accents gets one on the MPD side.
        return ((title, stripped) if stripped != title else (_add_accent(title), title)) + (kind,)
    if kind == 6:
        return _double_space(title), title, kind
    if kind == 7:
        return f"{title} - Live", title, kind
    if kind == 8:
        return title, f"{title} (feat. {feat})", kind
    return title, title, kind
