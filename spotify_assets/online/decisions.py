"""Decision rules of the online loop: canary promotion and engagement degradation (pure).

**Canary rule** (:func:`canary_verdict`). An *impression* is one user list served; it is *liked*
when a feedback row names it and likes one of its playlists. Only impressions served since the
candidate was deployed count, for the champion (its ``champion`` arm) and the candidate. The
decision is taken once, at the first evaluation where each arm has at least
``min_impressions``: with like-rates ``p_c`` (candidate) and ``p_h`` (champion), the one-sided
two-proportion z-test of

    H0: p_c <= p_h - margin    against    H1: p_c > p_h - margin

with the unpooled standard error ``sqrt(p_c(1-p_c)/n_c + p_h(1-p_h)/n_h)``. The candidate is
**promoted** when the test rejects H0 at level ``alpha`` (its like-rate is at least the
champion's, less ``margin``, with confidence ``1 - alpha``); otherwise it is **rolled back**.
With ``margin = 0`` (the default) the candidate has to be shown better; a positive margin
accepts a candidate that is not worse by more than the margin. One look at a fixed sample size
keeps the error rate at ``alpha`` (looking after every batch and stopping at the first
significant result would inflate it). When both rates are 0 or both 1 the standard error is 0
and the sign of ``p_c - p_h + margin`` decides (a tie rolls back).

**Degradation rule** (:func:`degradation_verdict`): the serving champion's like-rate over its
latest ``window`` impressions is compared with its level at promotion (the rate the canary
measured, or, for a champion deployed without a canary, the rate of its first ``window``
impressions); below ``fraction`` of that level, a retrain is requested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROMOTE, ROLL_BACK, WAIT = "promote", "roll back", "wait"


@dataclass(frozen=True)
class ArmCounts:
    """Impressions and liked impressions of one arm."""

    impressions: int
    liked: int

    @property
    def rate(self) -> float:
        return self.liked / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class CanaryRule:
    min_impressions: int = 200
    alpha: float = 0.05
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.min_impressions < 1 or not 0 < self.alpha < 1 or not 0 <= self.margin < 1:
            raise ValueError(f"invalid canary rule {self}: min_impressions >= 1, 0 < alpha < 1, 0 <= margin < 1")

    def describe(self) -> str:
        return (f"once both arms have >= {self.min_impressions} impressions since the candidate was deployed: "
                f"promote when the one-sided two-proportion z-test rejects 'candidate like-rate <= champion "
                f"like-rate - {self.margin:g}' at level {self.alpha:g}, else roll back")


@dataclass(frozen=True)
class CanaryVerdict:
    decision: str
    reason: str
    champion: ArmCounts
    candidate: ArmCounts
    z: float | None = None
    p_value: float | None = None

    def as_row(self) -> dict:
        return {"decision": self.decision, "champion_impressions": self.champion.impressions,
                "champion_likes": self.champion.liked, "champion_like_rate": round(self.champion.rate, 4),
                "candidate_impressions": self.candidate.impressions, "candidate_likes": self.candidate.liked,
                "candidate_like_rate": round(self.candidate.rate, 4),
                "z": None if self.z is None else round(self.z, 4),
                "p_value": None if self.p_value is None else round(self.p_value, 6), "reason": self.reason}


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def canary_verdict(champion: ArmCounts, candidate: ArmCounts, rule: CanaryRule) -> CanaryVerdict:
    """Promote, roll back, or wait for more impressions (see the module docstring)."""
    short = [name for name, arm in (("champion", champion), ("candidate", candidate))
             if arm.impressions < rule.min_impressions]
    if short:
        return CanaryVerdict(WAIT, f"{' and '.join(short)} below {rule.min_impressions} impressions "
                                   f"(champion {champion.impressions}, candidate {candidate.impressions})",
                             champion, candidate)
    diff = candidate.rate - champion.rate + rule.margin
    se = math.sqrt(candidate.rate * (1 - candidate.rate) / candidate.impressions
                   + champion.rate * (1 - champion.rate) / champion.impressions)
    if se == 0.0:
        z = math.inf if diff > 0 else -math.inf
    else:
        z = diff / se
    p_value = normal_sf(z)
    rates = (f"candidate {candidate.rate:.4f} ({candidate.liked}/{candidate.impressions}) vs champion "
             f"{champion.rate:.4f} ({champion.liked}/{champion.impressions})")
    if p_value < rule.alpha:
        return CanaryVerdict(PROMOTE, f"{rates}: z = {z:.3f}, p = {p_value:.2g} < {rule.alpha:g}",
                             champion, candidate, z, p_value)
    return CanaryVerdict(ROLL_BACK, f"{rates}: z = {z:.3f}, p = {p_value:.2g} >= {rule.alpha:g}",
                         champion, candidate, z, p_value)


@dataclass(frozen=True)
class DegradationVerdict:
    degraded: bool
    reason: str
    baseline_rate: float | None
    recent: ArmCounts | None


def degradation_verdict(baseline_rate: float | None, recent: ArmCounts, fraction: float,
                        window: int) -> DegradationVerdict:
    """Degraded when ``recent`` (the latest ``window`` impressions of the champion) has a
    like-rate below ``fraction`` x ``baseline_rate``; no verdict without a baseline or with
    fewer than ``window`` recent impressions."""
    if baseline_rate is None:
        return DegradationVerdict(False, "no baseline like-rate yet", None, recent)
    if recent.impressions < window:
        return DegradationVerdict(False, f"{recent.impressions} recent impressions (< {window})", baseline_rate,
                                  recent)
    floor = fraction * baseline_rate
    if recent.rate < floor:
        return DegradationVerdict(True, f"like-rate {recent.rate:.4f} over the latest {recent.impressions} "
                                        f"impressions is below {fraction:g} x {baseline_rate:.4f} = {floor:.4f} "
                                        "(its level at promotion)", baseline_rate, recent)
    return DegradationVerdict(False, f"like-rate {recent.rate:.4f} >= {floor:.4f} ({fraction:g} x "
                                     f"{baseline_rate:.4f} at promotion)", baseline_rate, recent)
