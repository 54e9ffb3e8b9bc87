"""Which pod-template revision the spec asks for (see core.releases).

The revision of a template is the number status already gives it (stable, candidate, the
release last rolled back, a warm one); a template status does not know gets the next number
no release in status or in the cluster uses. So the same template always maps to the same
release while it matters, across operator restarts, and a new one never takes the name of
an object still running.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelship.core.releases import Release
from modelship_api.modeldeployment import ModelDeploymentStatus


def _known(status: ModelDeploymentStatus) -> list[tuple[str | None, int]]:
    return [(status.stable_template, status.stable_revision or 0),
            (status.candidate_template, status.candidate_revision or 0),
            (status.rolled_back_template, status.rolled_back_revision or 0),
            *((w.template, w.revision or 0) for w in status.warm_versions or [])]


def adopt(status: ModelDeploymentStatus, template: str | None) -> None:
    """A release that serves without a recorded template (written by an operator that did not
    track templates) is taken to run the spec's template: upgrading modelship starts no
    rollout by itself."""
    if template is None:
        return
    if status.stable_version is not None and status.stable_template is None:
        status.stable_template = template
    if status.candidate_version is not None and status.candidate_template is None:
        status.candidate_template = template


def revision_for(status: ModelDeploymentStatus, template: str | None,
                 observed: Iterable[Release]) -> int:
    """The revision that serves `template`. Before anything serves there is nothing to
    protect: the first release is revision 0 whatever its template (re-rendered in place)."""
    if status.stable_version is None:
        return 0
    if template is None:
        return status.stable_revision or 0
    known = _known(status)
    for tpl, revision in known:
        if tpl == template:
            return revision
    used = {r for _, r in known}
    used |= {d.revision or 0 for d in status.draining or []}
    used |= {r.revision for r in observed}
    return max(used) + 1


def template_of(status: ModelDeploymentStatus, release: Release) -> str | None:
    """The template hash status records for `release`, if any."""
    triples = [(status.stable_version, status.stable_revision, status.stable_template),
               (status.candidate_version, status.candidate_revision, status.candidate_template),
               *((w.version, w.revision, w.template) for w in status.warm_versions or [])]
    for version, revision, template in triples:
        if version is not None and Release(version, revision or 0) == release:
            return template
    return None
