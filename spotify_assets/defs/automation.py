"""The automation sensor: it evaluates every derived asset's automation condition
(``spotify_assets.automation.EAGER_WHEN_CHECKS_PASS``) and launches the runs they ask for.

It is RUNNING by default, so ``dagster-daemon run`` (or ``make dev``) rebuilds downstream of a
new slice without a click. ``SPOTIFY_ASSETS_AUTOMATION=off`` in the daemon's environment
declares it stopped instead; the UI (Automation tab) or ``dagster sensor stop automation_sensor``
turns it off on a running instance. It runs in the code server (``use_user_code_server``):
the conditions include a Python one (``NoRunInFlight``) the daemon cannot evaluate alone.
"""

import os

import dagster as dg

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    use_user_code_server=True,
    default_status=(dg.DefaultSensorStatus.STOPPED if os.environ.get("SPOTIFY_ASSETS_AUTOMATION", "on") == "off"
                    else dg.DefaultSensorStatus.RUNNING),
    # how often conditions are evaluated; tests shorten it
    minimum_interval_seconds=int(os.environ.get("SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS", "30")),
    description="Rebuilds derived assets whose inputs changed and passed their blocking checks, one chain at a time.",
)
