"""Names and labels of the objects derived from a ModelDeployment (pure)."""

from __future__ import annotations

import re

from modelship import constants

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63  # Service names are DNS-1035 labels


def version_name(deployment: str, version: int) -> str:
    """Deployment and Service of one model version: `<name>-v<version>`."""
    return f"{deployment}-v{version}"


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


def version_selector(deployment: str, version: int) -> dict[str, str]:
    """Selects the pods of exactly one version of one ModelDeployment."""
    return {
        constants.LABEL_DEPLOYMENT: deployment,
        constants.LABEL_MODEL_VERSION: str(version),
    }


def all_versions_selector(deployment: str) -> dict[str, str]:
    """Selects the pods of every version of one ModelDeployment (the stable address)."""
    return {constants.LABEL_DEPLOYMENT: deployment, constants.LABEL_NAME: "triton"}
