"""The fused, blocked labeler: overlap -> score -> liked playlists (docs/architecture.md#labels).

For a block of users ``[start, stop)`` it computes the overlap block ``M = U_block · Pᵀ``
(sparse, ``Pᵀ`` prepared once), scores only its non-zeros and keeps only what downstream
needs: per user the liked playlists, the hard-negative candidates, the number of scored
playlists, and, per playlist, the best few ownership candidates. Memory is bounded by the
block, never by users × playlists.

Definitions (all exact; the CPU kernel reproduces :func:`dense_reference` bit for bit)::

    m(u, j) = |songs(u) ∩ songs(j)|,  s(u) = |songs(u)|,  p(j) = |songs(j)|
    score(u, j) = ((1 - e_u) · ln(1 + m) + e_u) / (sqrt(s_u) · sqrt(p_j))    where m > 0
    n(u)        = playlists with m > 0
    liked(u)    = top max(1, ceil(0.015 · n)) by (score desc, playlist id asc); none if n = 0
    hard(u)     = the next ceil(0.2 · (n - |liked|)) in the same order: the top 20% by score
                  of the user's scored, non-liked playlists
    priority    = score / sqrt(s_u)   (ownership: docs/architecture.md#ownership)

Selection without a full sort. Scores within a user row take few distinct values (they
depend on the row only through (m, p)), so the kernel buckets every score by the bit
pattern of its float32 rounding (exponent + 6 mantissa bits: ~1% wide; fewer bits for
blocks of very short rows), histograms (row, bucket), finds from the per-row cumulative
counts the buckets holding the k-th and the t-th element, and sorts exactly only the
elements of those boundary buckets plus the few above the liked boundary (whose order is
kept). Everything else is classified by one table lookup per element. The overlap itself
calls scipy's SMMP kernel directly with a flop-count upper bound for the output size,
which skips scipy's separate counting pass.

Hard-candidate cap. At full scale a user has thousands of hard candidates. With
``max_hard_candidates=c`` a user whose exact pool is larger keeps a uniform random subset
of ``c``: the ``c`` pool members with the smallest ``hash(seed, user, playlist)``
(splitmix64), so the subset depends on the seed, the user and the pool only, never on the
block boundaries.

Ownership candidates. Greedy ownership (``splits.assign_ownership``) needs, per playlist,
its users in priority order. Keeping all scored pairs is what the labeler must avoid, so it
keeps per playlist the top ``k`` users by ``(priority desc, user asc)``
(:class:`OwnershipCandidates`, exact, merged across blocks and shards). For m = 1 a
playlist ranks its users by ``w = ((1 - e) ln 2 + e) / s`` alone, so :func:`seed_ownership`
first fills the lists in rounds of the highest-w users; the main pass then only looks at
pairs with m >= 2 (see :class:`OwnershipSeed`). The greedy on these lists equals the greedy
on all pairs unless some playlist rejects all k of its candidates; the ownership step
reports that count (``exhausted``).
"""

from __future__ import annotations

from spotify_assets.label.scores import (  # noqa: F401
    BETA_A,
    BETA_B,
    HARD_SHARE,
    LIKED_SHARE,
    exploration_coefficients,
    hard_counts,
    liked_counts,
    score_pairs,
    subsample_keys,
)
from spotify_assets.label.ownership import (  # noqa: F401
    OwnershipCandidates,
)
from spotify_assets.label.kernel import (  # noqa: F401
    BlockLabeler,
    LabelBlock,
    OwnershipSeed,
    label_block,
)
from spotify_assets.label.torch_kernel import (  # noqa: F401
    TorchLabeler,
    resolve_device,
)
from spotify_assets.label.labels import (  # noqa: F401
    Labels,
    concat_blocks,
    merge_label_files,
    merge_labels,
)
from spotify_assets.label.driver import (  # noqa: F401
    DEFAULT_OWNERSHIP_K,
    block_ranges,
    flop_blocks,
    label_users,
    seed_ownership,
)
from spotify_assets.label.reference import (  # noqa: F401
    ReferenceLabels,
    dense_reference,
    ownership_candidates_reference,
)
