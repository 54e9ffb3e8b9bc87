"""Gateway API CRDs for the local cluster, taken from the `sigs.k8s.io/gateway-api` Go
module (its standard-channel CRD files ship in the module), so nothing else is downloaded."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from modelship_dev.cluster import LocalCluster
from modelship_dev.versions import GATEWAY_API_VERSION

MODULE = "sigs.k8s.io/gateway-api"


def crd_files(version: str = GATEWAY_API_VERSION) -> list[Path]:
    """The standard-channel CRD manifests of `version` (from the Go module cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["go", "mod", "init", "modelship.local/gateway-api"], cwd=tmp,
                       check=True, capture_output=True)
        out = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"],
                             cwd=tmp, check=True, capture_output=True, text=True, timeout=600)
    directory = Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"
    files = sorted(p for p in directory.glob("gateway.networking.k8s.io_*.yaml"))
    if not files:
        raise FileNotFoundError(f"no Gateway API CRDs in {directory}")
    return files


def install(cluster: LocalCluster) -> None:
    args = ["apply", "--server-side"]
    for path in crd_files():
        args += ["-f", str(path)]
    cluster.kubectl(*args)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "grpcroutes."
                    "gateway.networking.k8s.io", "--timeout=60s")
