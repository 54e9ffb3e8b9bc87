"""Build the local control plane's binaries from Go modules, cached outside the work tree.

`go install k8s.io/kubernetes/cmd/...@vX` fails because Kubernetes' go.mod replaces every
`k8s.io/*` staging module with a local path. A wrapper module that requires
`k8s.io/kubernetes vX.Y.Z` and replaces each staging module with its published `v0.Y.Z` builds
it; the replace list is generated from the upstream go.mod, never typed by hand. etcd's server
module has the same kind of relative replaces and gets the same treatment.

This module uses only the standard library so that it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from modelship_dev.versions import (
    ALERTMANAGER_VERSION,
    ENVOY_GATEWAY_VERSION,
    ETCD_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    PROMETHEUS_OPERATOR_VERSION,
    PROMETHEUS_VERSION,
)


def cache_root() -> Path:
    return Path(os.environ.get("MODELSHIP_CACHE", Path.home() / ".cache" / "modelship"))


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    version: str
    packages: dict[str, str]  # binary name -> Go package path
    replaces: Callable[[str], dict[str, str]] = field(default=lambda _v: {})
    ldflags: Callable[[str], list[str]] = field(default=lambda _v: [])
    tags: tuple[str, ...] = ()  # go build -tags

    @property
    def bin_dir(self) -> Path:
        """Keyed by version and build tags (binaries built with other tags differ)."""
        suffix = f"+{'+'.join(self.tags)}" if self.tags else ""
        return cache_root() / "bin" / f"{self.name}-{self.version}{suffix}"

    def path(self, binary: str) -> Path:
        return self.bin_dir / binary

    def is_built(self) -> bool:
        return all(self.path(b).is_file() for b in self.packages)


def _go(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return proc.stdout


def _upstream_gomod(module: str, version: str, cwd: Path) -> str:
    info = json.loads(_go(["mod", "download", "-json", f"{module}@{version}"], cwd))
    return Path(info["GoMod"]).read_text()


def relative_replaces(gomod: str) -> list[str]:
    """Modules that an upstream go.mod replaces with a relative path (`=> ./x` or `=> ../x`)."""
    found: list[str] = []
    for line in gomod.splitlines():
        m = re.match(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\.\.?/\S*)\s*$", line)
        if m and "FORBIDDEN" not in m.group(2):
            found.append(m.group(1))
    return found


def kubernetes_replaces(version: str) -> dict[str, str]:
    """Every k8s.io staging module pinned to the v0.Y.Z that matches Kubernetes vX.Y.Z."""
    staging_version = "v0." + version.removeprefix("v").split(".", 1)[1]
    with tempfile.TemporaryDirectory() as tmp:
        _go(["mod", "init", "modelship.local/probe"], Path(tmp))
        gomod = _upstream_gomod("k8s.io/kubernetes", version, Path(tmp))
    return {mod: staging_version for mod in relative_replaces(gomod)}


def same_version_replaces(module: str) -> Callable[[str], dict[str, str]]:
    """A module whose go.mod replaces its own sub-modules by relative paths: each one is
    pinned to the same published version."""
    def replaces(version: str) -> dict[str, str]:
        with tempfile.TemporaryDirectory() as tmp:
            _go(["mod", "init", "modelship.local/probe"], Path(tmp))
            gomod = _upstream_gomod(module, version, Path(tmp))
        return {mod: version for mod in relative_replaces(gomod)}
    return replaces


def kubernetes_ldflags(version: str) -> list[str]:
    major, minor = version.removeprefix("v").split(".")[:2]
    build_date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": f"module-{version}",
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in values.items()]
    return flags


KUBERNETES = Component(
    name="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    packages={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
    replaces=kubernetes_replaces,
    ldflags=kubernetes_ldflags,
)
ETCD = Component(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    packages={"etcd": "go.etcd.io/etcd/server/v3"},
    replaces=same_version_replaces("go.etcd.io/etcd/server/v3"),
    ldflags=lambda v: [f"-X go.etcd.io/etcd/api/v3/version.GitSHA=module-{v}"],
)
KWOK = Component(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ldflags=lambda v: [f"-X sigs.k8s.io/kwok/pkg/consts.Version={v}"],
)


def prometheus_release(version: str) -> str:
    """Module v0.3XX.Y is Prometheus 3.XX.Y."""
    minor, patch = version.removeprefix("v0.").split(".", 1)
    return f"3.{int(minor) - 300}.{patch}"


def prometheus_ldflags(version: str) -> list[str]:
    """`--version` and prometheus_build_info show the release, not the module version."""
    values = {
        "Version": prometheus_release(version),
        "Revision": f"module-{version}",
        "Branch": "module",
        "BuildUser": "modelship",
        "BuildDate": datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S"),
    }
    return [f"-X github.com/prometheus/common/version.{k}={v}" for k, v in values.items()]


PROMETHEUS = Component(
    name="prometheus",
    module="github.com/prometheus/prometheus",
    version=PROMETHEUS_VERSION,
    # promtool: `promtool check rules` in make lint, `promtool test rules` in the tests.
    packages={"prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
              "promtool": "github.com/prometheus/prometheus/cmd/promtool"},
    ldflags=prometheus_ldflags,
    # Service discovery for Kubernetes only (what the Prometheus Operator and the local
    # stack configure; static and file SD stay): without the cloud SDs' SDKs (AWS, Azure,
    # Google Compute, ...) half as many Go files compile, which a cold CI run feels.
    tags=("remove_all_sd", "enable_kubernetes_sd"),
)
ENVOY_GATEWAY = Component(
    name="envoy-gateway",
    module="github.com/envoyproxy/gateway",
    version=ENVOY_GATEWAY_VERSION,
    packages={"envoy-gateway": "github.com/envoyproxy/gateway/cmd/envoy-gateway"},
    ldflags=lambda v: [
        f"-X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion={v}"],
)


def helm_ldflags(version: str) -> list[str]:
    """What helm's Makefile sets: the version `helm version` prints, and the Kubernetes
    version that `helm template` and `helm lint` assume (1.20 otherwise), taken from the
    k8s.io/client-go that this helm is built with (v0.Y.Z is Kubernetes 1.Y)."""
    with tempfile.TemporaryDirectory() as tmp:
        _go(["mod", "init", "modelship.local/probe"], Path(tmp))
        gomod = _upstream_gomod("helm.sh/helm/v3", version, Path(tmp))
    found = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", gomod, re.MULTILINE)
    if found is None:
        raise ValueError(f"helm {version}: no k8s.io/client-go v0.Y.Z in its go.mod")
    values = {"version": version, "gitCommit": f"module-{version}", "gitTreeState": "clean"}
    flags = [f"-X helm.sh/helm/v3/internal/version.{k}={v}" for k, v in values.items()]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={found.group(1)}"]
    return flags


HELM = Component(
    name="helm",
    module="helm.sh/helm/v3",
    version=HELM_VERSION,
    packages={"helm": "helm.sh/helm/v3/cmd/helm"},
    ldflags=helm_ldflags,
)


def prometheus_common_ldflags(version: str) -> list[str]:
    """What `--version` and the *_build_info metric show, as the projects' Makefiles set it."""
    values = {
        "Version": version.removeprefix("v"),
        "Revision": f"module-{version}",
        "Branch": "module",
        "BuildUser": "modelship",
        "BuildDate": datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S"),
    }
    return [f"-X github.com/prometheus/common/version.{k}={v}" for k, v in values.items()]


PROMETHEUS_OPERATOR = Component(
    name="prometheus-operator",
    module="github.com/prometheus-operator/prometheus-operator",
    version=PROMETHEUS_OPERATOR_VERSION,
    packages={"prometheus-operator":
              "github.com/prometheus-operator/prometheus-operator/cmd/operator"},
    replaces=same_version_replaces("github.com/prometheus-operator/prometheus-operator"),
    ldflags=prometheus_common_ldflags,
)
ALERTMANAGER = Component(
    name="alertmanager",
    module="github.com/prometheus/alertmanager",
    version=ALERTMANAGER_VERSION,
    packages={"alertmanager": "github.com/prometheus/alertmanager/cmd/alertmanager"},
    ldflags=prometheus_common_ldflags,
)
COMPONENTS = (ETCD, KUBERNETES, KWOK, PROMETHEUS, ENVOY_GATEWAY, HELM, PROMETHEUS_OPERATOR,
              ALERTMANAGER)


def wrapper_gomod(component: Component) -> str:
    lines = [
        f"module modelship.local/build/{component.name}",
        "",
        "go 1.24",
        "",
        f"require {component.module} {component.version}",
    ]
    replaces = component.replaces(component.version)
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in sorted(replaces.items())]
        lines += [")"]
    return "\n".join(lines) + "\n"


def go_binary_name(package: str) -> str:
    """The file `go build -o <dir>/` writes for a main package: its last path element, or
    the one before a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = package.split("/")
    return parts[-2] if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]) else parts[-1]


def build(component: Component, log: Callable[[str], None] = print) -> None:
    """Build one component into its cache folder; the folder appears only when complete. A
    binary added to a component since its folder was built is built alone and added."""
    missing = {b: p for b, p in component.packages.items() if not component.path(b).is_file()}
    if not missing:
        log(f"{component.name} {component.version}: cached in {component.bin_dir}")
        return
    work = cache_root() / "build" / f"{component.name}-{component.version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(wrapper_gomod(component))
    (work / "go.sum").unlink(missing_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false",
               GOCACHE=str(go_build_cache()))
    staging = Path(tempfile.mkdtemp(prefix=f"{component.name}-", dir=cache_root() / "build"))
    started = time.monotonic()
    log(f"{component.name} {component.version}: building {', '.join(missing)} ...")
    ldflags = " ".join(["-s", "-w", *component.ldflags(component.version)])
    tags = ["-tags", ",".join(component.tags)] if component.tags else []
    # One `go build` for all of them: each link overlaps the others' compiles (a link is
    # mostly one core), and the shared packages are compiled once either way.
    out = staging / "out"
    out.mkdir()
    _go(["build", "-trimpath", *tags, "-ldflags", ldflags, "-o", f"{out}/",
         *missing.values()], work, env)
    for binary, package in missing.items():
        (out / go_binary_name(package)).rename(staging / binary)
    out.rmdir()
    log(f"  {', '.join(missing)} built ({time.monotonic() - started:.0f}s)")
    component.bin_dir.parent.mkdir(parents=True, exist_ok=True)
    if component.bin_dir.is_dir():
        for binary in missing:  # each appears whole (a rename within one file system)
            (staging / binary).rename(component.path(binary))
        shutil.rmtree(staging)
    else:
        staging.rename(component.bin_dir)
    log(f"{component.name} {component.version}: done in {time.monotonic() - started:.0f}s")


def module_dir(component: Component) -> Path:
    """Where the Go module cache holds the component's module source (downloaded if needed):
    e.g. the Prometheus Operator's CRDs under example/prometheus-operator-crd/."""
    with tempfile.TemporaryDirectory() as tmp:
        _go(["mod", "init", "modelship.local/probe"], Path(tmp))
        out = _go(["mod", "download", "-json", f"{component.module}@{component.version}"],
                  Path(tmp))
    return Path(json.loads(out)["Dir"])


def go_build_cache() -> Path:
    """Go's build cache for these builds: shared while they run (the components share most of
    their packages), removed once all are built (binaries are what is cached; it would hold
    about 9 GB for good)."""
    return cache_root() / "build" / "go-cache"


def build_all(log: Callable[[str], None] = print) -> None:
    for component in COMPONENTS:
        try:
            build(component, log)
        except subprocess.CalledProcessError as err:
            sys.stderr.write(err.stderr or "")
            raise SystemExit(f"building {component.name} {component.version} failed") from err
    shutil.rmtree(go_build_cache(), ignore_errors=True)


def binary(name: str) -> Path:
    """Path of a cached binary, with a clear error when it has not been built yet."""
    for component in COMPONENTS:
        if name in component.packages:
            path = component.path(name)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{name} {component.version} is not built: run `modelship dev build`"
                )
            return path
    raise KeyError(name)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print-gomod", choices=[c.name for c in COMPONENTS])
    parser.add_argument("--path", metavar="BINARY",
                        help="print where a built binary is (fails when it is not built)")
    args = parser.parse_args(argv)
    if args.path:
        try:
            print(binary(args.path))
        except FileNotFoundError as err:
            raise SystemExit(str(err)) from None
        except KeyError:
            raise SystemExit(f"no component builds {args.path}") from None
        return
    if args.print_gomod:
        print(wrapper_gomod(next(c for c in COMPONENTS if c.name == args.print_gomod)), end="")
        return
    build_all()


if __name__ == "__main__":
    main()
