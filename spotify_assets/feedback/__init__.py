"""User feedback, the domain the HTTP service and the pipeline share (no Dagster, no FastAPI here).

* :mod:`spotify_assets.feedback.log`: the SQLite log the service appends to and the pipeline
  reads (``FeedbackLog``, ``default_feedback_path``).
* :mod:`spotify_assets.feedback.training`: how logged rows become training positives without
  leaking held-out answers (``training_pairs``), and the ``feedback_positives`` arrays
  (``FEEDBACK_POSITIVES``, ``load_feedback_positives``).
"""

from spotify_assets.feedback.log import FeedbackLog, FeedbackRows, default_feedback_path
from spotify_assets.feedback.training import (
    FEEDBACK_POSITIVES,
    FeedbackPairs,
    load_feedback_positives,
    training_pairs,
)

__all__ = ["FEEDBACK_POSITIVES", "FeedbackLog", "FeedbackPairs", "FeedbackRows", "default_feedback_path",
           "load_feedback_positives", "training_pairs"]
