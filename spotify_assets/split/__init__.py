"""Splits, ownership and sampling, vectorized and seeded (no Dagster imports); the definitions
are in docs/architecture.md (#user-split, #ownership, #training-interactions, #eval-batches).

Conventions. Users and playlists are dense matrix-row ids. A user's liked playlists come
from :class:`spotify_assets.label.Labels` as CSR (``liked_indptr``, ``liked_playlists``);
every per-pair array here (``split``…) is aligned with ``liked_playlists``. Split codes per
liked pair: 0 train, 1 val, 2 test.

Cold users. A seeded share of the users with positives is *cold*: all their positives are
held out with code TEST and the user is flagged in ``UserSplits.cold`` (and in every eval
batch row), so evaluation reports them as their own segment and training never sees them.
A cold user's positives count as held out everywhere (never owned by that user, never
sampled as its negatives).

Seeds. Every function that draws takes ``seed`` and derives its own stream from
``SeedSequence([seed, STREAM])``, so changing one stage never shifts another's draws; two
calls with the same arguments return identical arrays.
"""

from __future__ import annotations

from spotify_assets.split.common import (  # noqa: F401
    Verdict,
)
from spotify_assets.split.users import (  # noqa: F401
    SPLIT_NAMES,
    TEST,
    TRAIN,
    UserSplits,
    VAL,
    liked_keys,
    pairs_matrix,
    split_pairs,
    split_sizes,
    split_users,
)
from spotify_assets.split.interactions import (  # noqa: F401
    Interactions,
    check_interactions_hold_out,
    training_interactions,
)
from spotify_assets.split.ownership import (  # noqa: F401
    Ownership,
    assign_ownership,
    ownership_gini,
    ownership_reference,
)
from spotify_assets.split.sampling import (  # noqa: F401
    EvalBatch,
    TripletSample,
    sample_eval_batches,
    sample_triplets,
    usable_hard_pools,
)
from spotify_assets.split.checks import (  # noqa: F401
    check_eval_batches_valid,
    check_liked_counts,
    check_no_split_overlap,
    check_ownership_valid,
    check_triplets_valid,
)
from spotify_assets.split.reference import (  # noqa: F401
    eval_batches_reference,
    triplets_reference,
)
from spotify_assets.split.feedback import (  # noqa: F401
    feedback_triplets,
)
