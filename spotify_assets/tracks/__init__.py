"""Track-level models (issue 7): item2vec embeddings, similar tracks, duplicate tracks, the
embedding map, next-track examples and the playlist-continuation evaluation.

Pure modules (no Dagster imports): :mod:`.item2vec` (SGNS in PyTorch, PPMI + SVD peer),
:mod:`.similar` (nearest tracks via Annoy or exact cosine), :mod:`.duplicates`,
:mod:`.embedding_map`, :mod:`.continuation` (splits, examples, RecSys Challenge 2018
metrics and rankers). The assets live in :mod:`spotify_assets.defs.tracks`; the command
line is ``python -m spotify_assets.tracks similar "Get Lucky"``.
"""

from spotify_assets.tracks.similar import TrackEmbeddings, find_tracks, load_embeddings, similar_tracks

__all__ = ["TrackEmbeddings", "find_tracks", "load_embeddings", "similar_tracks"]
