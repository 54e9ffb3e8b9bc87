"""Render a ModelDeployment's status for a person (`modelship status`), pure."""

from __future__ import annotations

from collections.abc import Sequence

from modelship_api.modeldeployment import ModelDeployment


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def _release(version: int | None, revision: int | None, template: str | None) -> str:
    """`3`, or `3 revision 1 (template 5f2c...)`: the pod template next to the version."""
    if version is None:
        return "-"
    text = str(version) if not revision else f"{version} revision {revision}"
    return f"{text} (template {template})" if template else text


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; the last column (a message) is not padded."""
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    return ["    " + "  ".join([*(r[i].ljust(widths[i]) for i in range(n)), r[n]]).rstrip()
            for r in rows]


def _monitoring(md: ModelDeployment) -> list[str]:
    mon = md.status.monitoring
    if not md.spec.monitoring.enabled:
        return ["  monitoring: off (spec.monitoring.enabled false)"]
    if mon is None:
        return []
    age = ""
    if mon.model_age_seconds is not None:
        days = mon.model_age_seconds / 86400
        age = (f", model age at least {days:.1f}d (published {mon.published_at}, data time "
               "unknown)" if mon.age_source == "PublishTime" else
               f", model age {days:.1f}d (data {mon.data_time}"
               f"{' from lineage.json' if mon.age_source == 'LineageDataTime' else ''})")
    nonfinite = f", non-finite outputs {mon.non_finite}" if mon.non_finite is not None else ""
    lines = [f"  monitoring: version {mon.version} at {mon.evaluated_at or '-'} over "
             f"{mon.window}{age}{nonfinite}"]
    if mon.statistics:
        rows = [("STATISTIC", "RESULT", "DRIFTED", "PSI", "JS", "SAMPLES", "SINCE", "MESSAGE")]
        rows += [(s.name, s.result, "yes" if s.drifted else "no", _fmt(s.psi), _fmt(s.js),
                  "-" if s.samples is None else str(s.samples), s.since or "-", s.message)
                 for s in mon.statistics]
        lines += _table(rows)
    lines += [f"    cannot run: {why}" for why in mon.unavailable or []]
    return lines


def _retraining(md: ModelDeployment) -> list[str]:
    rt = md.status.retraining
    if md.spec.retraining is None or rt is None:
        return []
    lines = [f"  retraining: {rt.started_last_day} started in 24h (maxPerDay "
             f"{md.spec.retraining.max_per_day}), next allowed {rt.next_allowed_at or 'now'}"]
    if rt.triggered:
        lines.append(f"    triggered: {rt.triggered}")
    if rt.not_started:
        lines.append(f"    not started: {rt.not_started}")
    if rt.history:
        rows = [("RUN", "TRIGGER", "STARTED", "PHASE", "VERSION", "PROMOTED")]
        rows += [(r.name, r.trigger, r.started_at, r.phase,
                  "-" if r.version is None else str(r.version), r.promoted_at or "-")
                 for r in rt.history[:5]]
        lines += _table(rows)
    return lines


def render(md: ModelDeployment) -> str:
    st = md.status
    stable = _release(st.stable_version, st.stable_revision, st.stable_template)
    candidate = _release(st.candidate_version, st.candidate_revision, st.candidate_template)
    lines = [
        f"{md.metadata.namespace}/{md.metadata.name}  model {md.spec.model.name}",
        f"  phase:      {st.phase or '-'}" + (f"  ({st.message})" if st.message else ""),
        f"  stable:     {stable}",
        f"  candidate:  {candidate}",
    ]
    if st.weights is not None:
        mirror = f", mirror {st.weights.mirror}%" if st.weights.mirror else ""
        lines.append(f"  traffic:    stable {st.weights.stable}% / candidate "
                     f"{st.weights.candidate}%{mirror}")
    if st.rollout is not None:
        ro = st.rollout
        paused = f"  PAUSED: {ro.pause_reason}" if ro.paused else ""
        lines.append(f"  rollout:    {ro.strategy} stage {ro.stage or '-'} step {ro.step}"
                     f" since {ro.stage_started_at or '-'}{paused}")
    if st.analysis is not None:
        an = st.analysis
        lines.append(f"  analysis:   last {an.last_result or '-'} at {an.last_run_at or '-'}; "
                     f"{an.consecutive_failures} failed, {an.consecutive_inconclusive} "
                     "inconclusive in a row")
        rows = [("CHECK", "RESULT", "VALUE", "STABLE", "THRESHOLD", "MESSAGE")]
        rows += [(c.name, c.result, _fmt(c.value), _fmt(c.stable_value), c.threshold,
                  c.message) for c in an.checks or []]
        lines += _table(rows)
    lines += _monitoring(md)
    lines += _retraining(md)
    for d in st.draining or []:
        confirmed = (f"route confirmed {d.route_confirmed_at}" if d.route_confirmed_at
                     else "waiting for the route to be confirmed")
        rev = f"-r{d.revision}" if d.revision else ""
        lines.append(f"  draining:   v{d.version}{rev} off the route since {d.since}; "
                     f"{confirmed}")
    for cond in st.conditions or []:
        lines.append(f"  {cond.type}={cond.status} {cond.reason}: {cond.message}".rstrip(": "))
    if st.history:
        lines.append("  history:")
        for h in st.history[:5]:
            rev = f"-r{h.revision}" if h.revision else ""
            lines.append(f"    v{h.version}{rev} {h.outcome} ({h.strategy}) "
                         f"{h.finished_at or ''} {h.reason}".rstrip())
    return "\n".join(lines)
