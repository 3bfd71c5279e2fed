"""The automation policy shared by every derived asset."""

import dagster as dg

# Rebuild when an upstream asset changes, but only from upstream data whose blocking checks
# passed: a bad slice or a leaking split never flows on to models and recommendations.
EAGER_WHEN_CHECKS_PASS = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
