"""The online loop around the service (no Dagster here): simulated users, online metrics from
the service's log, the canary decision rule and the engagement-degradation rule.

* :mod:`spotify_assets.online.simulate`: users that call a running service for their top 5 and
  like a recommended playlist when it is one of their held-out positives.
* :mod:`spotify_assets.online.metrics`: like-rate per model version and day, feedback volume,
  users, refusals and cold-start share as tables, and their plots.
* :mod:`spotify_assets.online.decisions`: when a canary's candidate is promoted or rolled back,
  and when the serving model's engagement has degraded.
"""
