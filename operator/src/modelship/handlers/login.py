"""How Kopf reaches the API server: in a pod, at the address the kubelet gives in
KUBERNETES_SERVICE_HOST/PORT (client-go's in-cluster config, which the watch caches'
lightkube client uses too), not Kopf's fallback `https://kubernetes.default.svc`, which
needs the cluster's DNS; elsewhere from the kubeconfig."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import kopf


def in_cluster_server(env: Mapping[str, str]) -> str | None:
    """The API server's URL from the kubelet's variables, None outside a pod."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Registering a login handler replaces Kopf's defaults, whose order it keeps: a
    # kubeconfig when one is configured, else the pod's service account.
    info = kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        return info
    info = kopf.login_with_service_account(**kwargs)
    server = in_cluster_server(os.environ)
    if info is not None and server is not None:
        return dataclasses.replace(info, server=server)
    return info
