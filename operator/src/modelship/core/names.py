"""Names and labels of the objects derived from a ModelDeployment (pure)."""

from __future__ import annotations

import re

from modelship import constants
from modelship.core.releases import Release

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63  # Service names are DNS-1035 labels


def version_name(deployment: str, version: int) -> str:
    """Deployment and Service of one model version: `<name>-v<version>`."""
    return release_name(deployment, Release(version))


def release_name(deployment: str, release: Release) -> str:
    """Deployment and Service of one release: `<name>-v<version>`, and
    `<name>-v<version>-r<revision>` for a later pod-template revision."""
    return f"{deployment}-v{release.label}"


def release_pods(deployment: str, release: Release) -> str:
    """A regular expression matching the names of the release's pods and nothing else (a
    Deployment's pods are `<deployment>-<pod-template-hash>-<suffix>`; a DNS-1035 name has
    no character a regular expression would take for an operator)."""
    return release_name(deployment, release) + "-[a-z0-9]+-[a-z0-9]+"


def is_dns_1035(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_DNS_1035.match(name))


def common_labels(deployment: str, model: str) -> dict[str, str]:
    return {
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_NAME: "triton",
        constants.LABEL_INSTANCE: deployment,
        constants.LABEL_COMPONENT: "inference-server",
        constants.LABEL_DEPLOYMENT: deployment,
        constants.LABEL_MODEL: model,
    }


def version_selector(deployment: str, version: int | Release) -> dict[str, str]:
    """Selects the pods of exactly one release of one ModelDeployment (a plain version:
    its revision 0). The model-version label holds the release (`3`, `3-r1`), so the
    selectors of two revisions of one version never overlap."""
    release = version if isinstance(version, Release) else Release(version)
    return {
        constants.LABEL_DEPLOYMENT: deployment,
        constants.LABEL_MODEL_VERSION: release.label,
    }


def all_versions_selector(deployment: str) -> dict[str, str]:
    """Selects the pods of every version of one ModelDeployment (the stable address)."""
    return {constants.LABEL_DEPLOYMENT: deployment, constants.LABEL_NAME: "triton"}
