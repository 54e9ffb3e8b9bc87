"""The rollout checks inputDrift and predictionDrift (pure): which live statistics of the
candidate (and of the stable version) to query, and the one number each check is judged by.

inputDrift and predictionDrift are the largest PSI of the candidate's input or output
statistics against the candidate's own profile.json. predictionDrift with relativeToStable
is the PSI of the candidate's class distribution against the stable version's over the same
window: both see the same traffic mix (canary weights split requests at random, shadow
mirrors the very requests stable answers), so a candidate that predicts one class for
everything stands out even without a profile. (nonFinite is a plain PromQL check,
core.analysis.queries.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelship.core.analysis.verdicts import Measurement
from modelship.core.drift.monitor import Target, watched
from modelship.core.drift.profiles import ProfileRead
from modelship.core.drift.queries import VectorAnswer, VectorQuery, classes_query, statistic_query
from modelship.core.drift.scores import Score, against_profile, relative
from modelship_api.modeldeployment import Check
from modelship_api.monitoring import Monitoring

_SOURCE = {"inputDrift": "input", "predictionDrift": "output"}
CANDIDATE, STABLE = "candidate:", "stable:"


def plan(check: Check, monitoring: Monitoring, read: ProfileRead, candidate: Target,
         stable: Target | None, window: str) -> list[VectorQuery]:
    """The queries of one check, keyed "candidate:<statistic>" / "stable:<statistic>"."""
    if check.builtin == "predictionDrift" and check.relative_to_stable:
        if stable is None:
            return []
        return [classes_query(t.model, t.version, window, t.matchers, key=prefix + "classes")
                for prefix, t in ((CANDIDATE, candidate), (STABLE, stable))]
    if read.profile is None:
        return []
    stats, _ = watched(monitoring, read.profile)
    source = _SOURCE[check.builtin or ""]
    return [VectorQuery(CANDIDATE + q.key, q.promql, q.by) for q in (
        statistic_query(name, stat, candidate.model, candidate.version, window,
                        candidate.matchers) for name, stat in stats if stat.source == source)]


def _worst(scores: Sequence[tuple[str, Score]]) -> Measurement:
    """The largest PSI, once every statistic is conclusive."""
    for name, score in scores:
        if score.psi is None:
            return Measurement(requests=score.samples,
                               inconclusive=score.unavailable or score.inconclusive or name)
    name, worst = max(scores, key=lambda s: s[1].psi or 0.0)
    return Measurement(value=worst.psi, requests=min(s.samples for _, s in scores))


def measure(check: Check, monitoring: Monitoring, read: ProfileRead, has_stable: bool,
            answers: Mapping[str, VectorAnswer]) -> Measurement:
    """What the check's queries mean: its value, or why it is Inconclusive."""
    if check.builtin == "predictionDrift" and check.relative_to_stable:
        if not has_stable:
            return Measurement(inconclusive="no stable version to compare with")
        score = relative(answers.get(CANDIDATE + "classes"), answers.get(STABLE + "classes"),
                         monitoring.min_samples)
        stable = answers.get(STABLE + "classes")
        stable_samples = sum(stable.values.values()) if stable is not None else 0.0
        if score.psi is None:
            return Measurement(requests=score.samples, stable_requests=stable_samples,
                               inconclusive=score.inconclusive)
        return Measurement(value=score.psi, requests=score.samples,
                           stable_requests=stable_samples)
    if read.profile is None:
        return Measurement(inconclusive=f"cannot run: {read.missing}")
    stats, _ = watched(monitoring, read.profile)
    source = _SOURCE[check.builtin or ""]
    mine = [(n, s) for n, s in stats if s.source == source]
    if not mine:
        return Measurement(inconclusive=f"cannot run: the profile has no {source} statistic "
                           "among those watched")
    return _worst([(name, against_profile(name, stat, answers.get(CANDIDATE + name),
                                          monitoring.min_samples)) for name, stat in mine])
