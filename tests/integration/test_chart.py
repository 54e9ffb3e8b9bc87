"""The Helm chart as a user meets it, rendered by the helm built from its Go module: every
values file under charts/modelship/ci/ renders and the real API server accepts every object;
bad values are refused naming the key; RBAC and monitoring objects follow the values; the
pod passes the API server's own `restricted` Pod Security check; and the operator works
under the chart's RBAC alone."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import REPO, Kubectl, wait_for
from tests.integration.test_modeldeployment import ready, sample
from tests.integration.test_trainingrun import training_run, wait_phase

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "modelship"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
# The namespaces that ci/namespaced-values.yaml watches.
WATCHED = ["ml-team-a", "ml-team-b"]
READ_VERBS = {"get", "list", "watch"}


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's cache, config and data folders, away from the user's."""
    home = tmp_path_factory.mktemp("helm")
    return {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def helm(env: dict[str, str], *args: str,
         kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    if kubeconfig is not None:
        full_env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([str(tools.binary("helm")), *args], env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def render(env: dict[str, str], *args: str, namespace: str = "modelship",
           release: str = "modelship") -> list[dict[str, Any]]:
    """`helm template` for the cluster's Kubernetes version; the objects, in order."""
    out = helm(env, "template", release, str(CHART), "--namespace", namespace,
               "--kube-version", tools.KUBERNETES.version, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = of_kind(objects, "Deployment")
    return dep


def bound_cluster_roles(objects: list[dict[str, Any]],
                        service_account: str) -> list[dict[str, Any]]:
    """The ClusterRoles that some ClusterRoleBinding grants to the operator's account."""
    names = {b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")
             if any(s["kind"] == "ServiceAccount" and s["name"] == service_account
                    for s in b["subjects"])}
    return [r for r in of_kind(objects, "ClusterRole") if r["metadata"]["name"] in names]


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.fixture(scope="module")
def watched_namespaces(cluster: LocalCluster) -> Iterator[list[str]]:
    for ns in WATCHED:
        cluster.kubectl("create", "namespace", ns, check=False)
    yield WATCHED
    for ns in WATCHED:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_is_accepted_by_the_api_server(
        values: Path, helm_home: dict[str, str], kubectl: Kubectl,
        watched_namespaces: list[str]) -> None:
    settings = yaml.safe_load(values.read_text()) or {}
    lint = helm(helm_home, "lint", "--strict", str(CHART), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render(helm_home, "-f", str(values), "--include-crds",
                     namespace=kubectl.namespace)
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount"} <= kinds

    # The cluster has no Prometheus Operator: its kinds are checked here, not submitted.
    monitoring = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    forced = (settings.get("monitoring") or {}).get("enabled") is True
    if forced:
        assert {o["kind"] for o in monitoring} == MONITORING_KINDS
        extra = settings["monitoring"].get("additionalLabels") or {}
        assert extra, "the monitoring values file should exercise additionalLabels"
        for obj in monitoring:
            assert extra.items() <= obj["metadata"]["labels"].items(), obj["metadata"]
            assert obj["metadata"]["namespace"] == kubectl.namespace
    else:
        assert monitoring == []
    rest = [o for o in objects if o not in monitoring]

    # Every namespaced object names its namespace (Roles live in the watched ones).
    assert all(o["metadata"].get("namespace") for o in rest
               if o["kind"] in {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding",
                                "PodDisruptionBudget"})
    text = "---\n".join(yaml.safe_dump(o) for o in rest)
    out = kubectl.cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                                  input_text=text, check=False)
    assert out.returncode == 0, out.stderr
    accepted = [line for line in out.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(rest), out.stdout
    assert "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "foo=bar"], "additional properties 'foo' not allowed"),
    (["--set", "watchNamespaces=foo"], "'/watchNamespaces': got string, want array"),
    (["--set", "watchNamespaces[0]=Team_A"], "'/watchNamespaces/0'"),
    (["--set", "replicaCount=-1"], "'/replicaCount'"),
    (["--set", "replicas=1"], "additional properties 'replicas' not allowed"),
    (["--set", "leaderElection.enabled=false"], "'/replicaCount'"),
    (["--set", "leaderElection.renewPeriod=0"], "'/leaderElection/renewPeriod'"),
    (["--set", "podAntiAffinity=soft"], "'/podAntiAffinity'"),
    (["--set", "monitoring.prometheusRule.notReadyFor=10"],
     "'/monitoring/prometheusRule/notReadyFor'"),
    (["--set", "resyncSeconds=-1"], "'/resyncSeconds'"),
    (["--set", "monitoring.enabled=maybe"], "'/monitoring/enabled'"),
    (["--set", "image.pullPolicy=Sometimes"], "'/image/pullPolicy'"),
    (["--set", "monitoring.podMonitor.interval=5 seconds"], "'/monitoring/podMonitor/interval'"),
    (["--set", "rbac.create=maybe"], "'/rbac/create': got string, want boolean"),
    (["--set", "serviceAccount.name=Operator_SA"], "'/serviceAccount/name'"),
    (["--set-json", 'watchNamespaces=["ml","ml"]'], "'/watchNamespaces'"),
    (["--set", "image.digest=sha256:abc"], "'/image/digest'"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_bad_values_are_refused_naming_the_key(args: list[str], message: str,
                                               helm_home: dict[str, str]) -> None:
    out = helm(helm_home, "template", "modelship", str(CHART), *args)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def lease_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = [r for r in of_kind(objects, "Role")
               if r["metadata"]["name"].endswith("-leader-election")]
    return role


def test_the_defaults_watch_the_whole_cluster_with_one_cluster_role(
        helm_home: dict[str, str]) -> None:
    objects = render(helm_home)
    # The only Role is the leader Lease's, in the release namespace.
    assert of_kind(objects, "Role") == [lease_role(objects)]
    assert lease_role(objects)["metadata"]["namespace"] == "modelship"
    args = deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--namespace") for a in args)
    (sa,) = of_kind(objects, "ServiceAccount")
    (role,) = bound_cluster_roles(objects, sa["metadata"]["name"])
    rules = grants(role)
    assert rules[("apps", "deployments")] == {"get", "list", "watch", "create", "patch",
                                              "delete"}
    assert rules[("apiextensions.k8s.io", "customresourcedefinitions")] == {"list", "watch"}
    # Kopf lists namespaces only when it serves a list of them.
    assert ("", "namespaces") not in rules
    assert ("", "secrets") not in rules and ("", "configmaps") not in rules


def test_watched_namespaces_get_a_role_each_and_nothing_cluster_wide_but_reads(
        helm_home: dict[str, str]) -> None:
    objects = render(helm_home, "-f", str(CHART / "ci" / "namespaced-values.yaml"),
                     namespace="ops")
    (sa,) = of_kind(objects, "ServiceAccount")
    account = sa["metadata"]["name"]
    roles = [r for r in of_kind(objects, "Role") if r != lease_role(objects)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == WATCHED
    assert lease_role(objects)["metadata"]["namespace"] == "ops"
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted([*WATCHED, "ops"])
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                        "namespace": "ops"}]
    role = roles[0]
    assert "delete" in grants(role)[("apps", "deployments")]

    (cluster_role,) = bound_cluster_roles(objects, account)
    assert grants(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    # No ClusterRole in this install may write anything, except the aggregated ones, which
    # are bound to no one here (the cluster's edit and admin roles absorb them).
    for other in of_kind(objects, "ClusterRole"):
        labels = other["metadata"]["labels"]
        if not any(k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in labels):
            assert all(verbs <= READ_VERBS for verbs in grants(other).values()), other
    args = deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={ns}"
                                                               for ns in WATCHED]
    (podmonitor,) = of_kind(render(helm_home, "-f", str(CHART / "ci" / "namespaced-values.yaml"),
                                   "--api-versions", "monitoring.coreos.com/v1"), "PodMonitor")
    assert podmonitor["spec"]["namespaceSelector"] == {"matchNames": WATCHED}


def test_aggregated_roles_extend_view_edit_and_admin(helm_home: dict[str, str]) -> None:
    roles = {r["metadata"]["name"]: r for r in of_kind(render(helm_home), "ClusterRole")}
    view, edit = roles["modelship-view"], roles["modelship-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {k: v for k, v in edit["metadata"]["labels"].items() if "aggregate-to" in k} == {
        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
        "rbac.authorization.k8s.io/aggregate-to-admin": "true"}
    assert all(verbs <= READ_VERBS for verbs in grants(view).values())
    assert grants(edit)[("modelship.io", "modeldeployments")] >= {"create", "patch", "delete"}
    assert set(grants(view)) >= {("modelship.io", "modeldeployments"),
                                 ("modelship.io", "trainingruns")}
    release = {r["metadata"]["name"] for r in of_kind(render(helm_home, release="ml"),
                                                      "ClusterRole")}
    assert {"ml-modelship-view", "ml-modelship-edit"} <= release


def test_monitoring_objects_follow_the_cluster_unless_forced(helm_home: dict[str, str]) -> None:
    def monitoring_kinds(*args: str) -> list[str]:
        return sorted(o["kind"] for o in render(helm_home, *args)
                      if o["apiVersion"].startswith("monitoring.coreos.com/"))

    served = ("--api-versions", "monitoring.coreos.com/v1")
    assert monitoring_kinds() == []
    assert monitoring_kinds(*served) == sorted(MONITORING_KINDS)
    assert monitoring_kinds("--set", "monitoring.enabled=true") == sorted(MONITORING_KINDS)
    assert monitoring_kinds(*served, "--set", "monitoring.enabled=false") == []
    assert monitoring_kinds(*served, "--set", "monitoring.serviceMonitor.enabled=false") == [
        "PodMonitor", "PrometheusRule"]

    objects = render(helm_home, *served)
    (service,) = of_kind(objects, "Service")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    (rule,) = of_kind(objects, "PrometheusRule")
    down = next(r for r in rule["spec"]["groups"][0]["rules"]
                if r["alert"] == "ModelshipOperatorDown")
    assert f'job="{service["metadata"]["name"]}"' in down["expr"]


def test_install_on_a_cluster_without_prometheus_operator_skips_and_says_so(
        helm_home: dict[str, str], cluster: LocalCluster, kubectl: Kubectl,
        watched_namespaces: list[str]) -> None:
    # The suite's cluster is shared: the local monitoring stack of earlier tests installed
    # the Prometheus Operator's CRDs. Take them away, as on a cluster that never had them
    # (each monitoring stack installs them again when it starts).
    crds = [n for n in cluster.kubectl("get", "crd", "-o", "name").stdout.split()
            if n.endswith(".monitoring.coreos.com")]
    if crds:
        cluster.kubectl("delete", "--wait=true", *crds)
    wait_for("monitoring.coreos.com/v1 gone from discovery", lambda: "monitoring.coreos.com/v1"
             not in cluster.kubectl("api-versions").stdout.split(), timeout=30)
    out = helm(helm_home, "install", "modelship", str(CHART), "--namespace", kubectl.namespace,
               "--dry-run=server", "-f", str(CHART / "ci" / "namespaced-values.yaml"),
               kubeconfig=cluster.kubeconfig)
    assert out.returncode == 0, out.stderr
    assert "kind: PodMonitor" not in out.stdout and "kind: Deployment" in out.stdout
    assert "name: modelship-dashboard" in out.stdout  # a plain ConfigMap: installed anyway
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "ConfigMap modelship-dashboard: the Grafana dashboard" in notes
    assert "Monitoring: skipped, the Prometheus Operator's CRDs (monitoring.coreos.com/v1) " \
        "are absent" in notes
    assert "Watched namespaces: ml-team-a, ml-team-b" in notes
    assert f"kubectl -n {kubectl.namespace} rollout status deployment/modelship-operator" \
        in notes
    assert "kubectl apply -n ml-team-a -f crds/samples/modeldeployment-local.yaml" in notes
    assert (REPO / "crds" / "samples" / "modeldeployment-local.yaml").is_file()


def test_grafana_dashboard_configmap_for_the_sidecar(helm_home: dict[str, str]) -> None:
    def dashboards(*args: str) -> list[dict[str, Any]]:
        return [o for o in of_kind(render(helm_home, *args), "ConfigMap")
                if o["metadata"]["name"] == "modelship-dashboard"]

    (cm,) = dashboards()  # on by default, with or without the Prometheus Operator
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "modelship"}
    (text,) = cm["data"].values()
    assert text == (CHART / "files" / "dashboard.json").read_text()
    dashboard = json.loads(text)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"namespace", "modeldeployment"} <= variables
    (row,) = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert row["repeat"] == "modeldeployment"

    (cm,) = dashboards("--set", "monitoring.dashboard.labels.grafana_dashboard=yes",
                       "--set", "monitoring.dashboard.folderAnnotation=k8s-sidecar-folder",
                       "--set", "monitoring.dashboard.folder=ML")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "yes"
    assert cm["metadata"]["annotations"] == {"k8s-sidecar-folder": "ML"}
    assert dashboards("--set", "monitoring.dashboard.enabled=false") == []


def test_operator_pod_follows_the_values_and_wiring(helm_home: dict[str, str]) -> None:
    objects = render(helm_home)
    dep = deployment(objects)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/modelship/operator:{version}"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
    labels = dep["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "modelship"
    assert labels["app.kubernetes.io/instance"] == "modelship"
    assert labels["app.kubernetes.io/version"] == version
    assert labels["app.kubernetes.io/managed-by"] == "Helm"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSHIP_METRICS_PORT"] == str(ports["metrics"]) == "8080"
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    assert container["command"] == ["modelship"] and container["args"][0] == "operator"
    assert {"--lease-name=modelship-operator", "--lease-namespace=modelship",
            "--lease-duration=8", "--lease-renew-period=2"} <= set(container["args"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    (service,) = of_kind(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()

    custom = render(helm_home, "-f", str(CHART / "ci" / "custom-values.yaml"))
    pod = deployment(custom)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == ("registry.example.com/platform/modelship-operator@sha256:"
                                  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "384Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}
    assert container["args"][-1] == "--verbose"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSHIP_RESYNC_SECONDS"] == "30"
    assert env["MODELSHIP_ANALYSIS_NAMESPACE_LABEL"] == "kubernetes_namespace"
    assert env["MODELSHIP_PROMETHEUS_ADDRESS"] == "http://prometheus.monitoring:9090"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert pod["serviceAccountName"] == "modelship-sa"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"] and "podAntiAffinity" in pod["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert deployment(custom)["metadata"]["name"] == "ml-platform-operator"


def test_two_replicas_with_a_lease_a_disruption_budget_and_spread_over_nodes(
        helm_home: dict[str, str]) -> None:
    objects = render(helm_home)
    dep = deployment(objects)
    selector = dep["spec"]["selector"]["matchLabels"]
    (pdb,) = of_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    pod = dep["spec"]["template"]["spec"]
    (preferred,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": selector}}
    # The Lease: created once, then read and renewed by its name only.
    rules = lease_role(objects)["rules"]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["create"]} in rules
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "resourceNames": ["modelship-operator"], "verbs": ["get", "update"]} in rules

    required = deployment(render(helm_home, "--set", "podAntiAffinity=required"))
    assert "requiredDuringSchedulingIgnoredDuringExecution" in required["spec"]["template"][
        "spec"]["affinity"]["podAntiAffinity"]
    none = deployment(render(helm_home, "--set", "podAntiAffinity=none"))
    assert "affinity" not in none["spec"]["template"]["spec"]
    own = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "topology.kubernetes.io/zone",
         "labelSelector": {"matchLabels": selector}}]}}
    overridden = deployment(render(helm_home, "--set-json", f"affinity={json.dumps(own)}"))
    assert overridden["spec"]["template"]["spec"]["affinity"] == own

    single = render(helm_home, "--set", "replicaCount=1")
    assert of_kind(single, "PodDisruptionBudget") == []
    assert "affinity" not in deployment(single)["spec"]["template"]["spec"]
    alone = render(helm_home, "--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    dep = deployment(alone)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-leader-elect" in args and not any(a.startswith("--lease") for a in args)
    assert [r for r in of_kind(alone, "Role") if "leader" in r["metadata"]["name"]] == []


def test_a_lease_too_short_to_renew_is_refused_naming_the_keys(
        helm_home: dict[str, str]) -> None:
    out = helm(helm_home, "template", "modelship", str(CHART),
               "--set", "leaderElection.leaseDuration=4", "--set", "leaderElection.renewPeriod=2")
    assert out.returncode != 0
    assert "leaderElection.leaseDuration (4) must be more than twice " \
        "leaderElection.renewPeriod (2)" in out.stderr, out.stderr


def operator_log(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("operator-*.log")))


def _pod_from_template(dep: dict[str, Any], name: str) -> dict[str, Any]:
    """The Deployment's pod as a bare Pod, under the namespace's default ServiceAccount (the
    chart's is not installed here)."""
    template = dep["spec"]["template"]
    spec = {k: v for k, v in template["spec"].items() if k != "serviceAccountName"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"]["labels"]},
            "spec": spec}


def test_operator_pod_meets_the_restricted_pod_security_profile(
        helm_home: dict[str, str], kubectl: Kubectl) -> None:
    dep = deployment(render(helm_home, namespace=kubectl.namespace))
    pod_security = dep["spec"]["template"]["spec"]["securityContext"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    security = container["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == pod_security["runAsGroup"] == 65532
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    # The API server's own judgement: Pod Security admission enforcing `restricted`.
    kubectl("label", "namespace", kubectl.namespace,
            "pod-security.kubernetes.io/enforce=restricted")
    ok = kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                 input_text=json.dumps(_pod_from_template(dep, "operator")))
    assert ok.returncode == 0, ok.stderr
    loosened = json.loads(json.dumps(dep))
    del loosened["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"]
    refused = kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                      input_text=json.dumps(_pod_from_template(loosened, "loosened")))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr, refused.stderr


def test_operator_runs_under_the_charts_rbac_alone(
        helm_home: dict[str, str], cluster: LocalCluster, kubectl: Kubectl,
        tmp_path: Path) -> None:
    """The chart's ServiceAccount, Role and ClusterRole, applied for real; the real operator
    authenticates with that account's token and watches the namespace: a ModelDeployment
    becomes Ready, a new version retires the old one, a TrainingRun gets its Job."""
    ns = kubectl.namespace
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    objects = render(helm_home, "--set", f"watchNamespaces={{{ns}}}",
                     "--set", "rbac.aggregateToDefaultRoles=false",
                     namespace=ns, release=release)
    rbac = [o for o in objects if o["kind"] in {"ServiceAccount", "Role", "RoleBinding",
                                                "ClusterRole", "ClusterRoleBinding"}]
    cluster_scoped = [f"{o['kind'].lower()}/{o['metadata']['name']}" for o in rbac
                      if o["kind"].startswith("Cluster")]
    assert cluster_scoped, "the namespaced install still reads CRDs and namespaces"
    applied = cluster.kubectl("apply", "--server-side", "-f", "-", check=False,
                              input_text="---\n".join(yaml.safe_dump(o) for o in rbac))
    assert applied.returncode == 0, applied.stderr
    op: OperatorProcess | None = None
    try:
        (sa,) = of_kind(objects, "ServiceAccount")
        token = kubectl("create", "token", sa["metadata"]["name"], "--duration=1h").stdout
        config = json.loads(cluster.kubeconfig.read_text())
        config["users"][0]["user"] = {"token": token.strip()}
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        who = subprocess.run([str(tools.binary("kubectl")), f"--kubeconfig={kubeconfig}",
                              "auth", "whoami", "-o", "json"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert f"system:serviceaccount:{ns}:{sa['metadata']['name']}" in who.stdout, who.stderr

        # With the chart's leader election arguments: the Lease is under the chart's RBAC too.
        args = deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
        lease_args = [a for a in args if a.startswith("--lease-")]
        assert f"--lease-namespace={ns}" in lease_args
        op = OperatorProcess(kubeconfig, tmp_path / "operator", ns, leader_election=True,
                             args=lease_args)
        op.start()
        try:
            lease_name = next(a.split("=", 1)[1] for a in lease_args
                              if a.startswith("--lease-name="))
            wait_for("the operator holds the chart's Lease", lambda: (
                (kubectl.get("lease", lease_name) or {}).get("spec") or {}).get(
                    "holderIdentity"), timeout=30)
            kubectl.apply(sample(version=1))
            wait_for("Ready v1", lambda: ready(kubectl, "defects-dev", 1), timeout=60)
            kubectl.apply(sample(version=2))
            wait_for("Ready v2", lambda: ready(kubectl, "defects-dev", 2), timeout=60)
            # After abortScaleDownDelay (30s by default) once the Service switched.
            wait_for("v1 retired", lambda: kubectl.get("deployment", "defects-dev-v1") is None
                     and kubectl.get("service", "defects-dev-v1") is None, timeout=120)

            kubectl.apply(training_run())
            wait_for("Job", lambda: kubectl.get("job", "defects-v1-train"))
            # kwok reports the trainer's pod Ready at once: the run is Evaluating.
            wait_phase(kubectl, "Evaluating")
        except AssertionError as err:
            raise AssertionError(f"{err}\noperator log:\n{op.log_tail()}") from None
        events = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
        mine = {e["involvedObject"]["kind"] for e in events
                if (e.get("source") or {}).get("component") == "modelship-operator"}
        assert "TrainingRun" in mine, events
        log = operator_log(tmp_path / "operator")
        for denied in ("Forbidden", "forbidden", "Not enough permissions"):
            assert denied not in log, log
    finally:
        if op is not None:
            op.stop()
        cluster.kubectl("delete", *cluster_scoped, "--ignore-not-found", check=False)
