"""`helm install` of charts/modelship into a control plane of this file's own, as a platform
team installs it, and the real operator working under exactly the RBAC that install made.

The operator process runs on this machine but authenticates as the chart's ServiceAccount,
with a token from the TokenRequest API (what the kubelet mounts into the pod), and takes the
installed Deployment's own arguments and environment: every request it sends is judged by
the chart's ClusterRole, Roles and Lease Role, and nothing else. The Deployment's pods stay
Pending: the only nodes here are kwok's, whose taint the chart does not tolerate, so no
simulated replica competes for the Lease. Workload pods tolerate that taint (as the other
integration tests' do), so kwok reports them Ready without a node agent.

Proved both ways: the operator reconciles ModelDeployments and TrainingRuns with no request
refused, and `kubectl auth can-i` as its account says no to what it must not do (secrets;
namespaces outside `watchNamespaces`; deleting anything cluster-wide). A rule taken away
after install is reported on the resource with the API server's own 403 message.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.helm import Helm, operator_deployment, operator_like_the_pod
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for, wait_for_status
from tests.integration.test_modeldeployment import condition, ready, sample
from tests.integration.test_trainingrun import training_run, wait_phase

pytestmark = pytest.mark.integration

COMPONENT = "modelship-operator"  # the source of the operator's events
DENIED = ("forbidden", "Forbidden", " 403", "Not enough permissions")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A bare control plane: no CRDs until `helm install` brings them. It enforces owner
    references' permissions, as OpenShift does: a child with blockOwnerDeletion needs the
    right to update its owner's finalizers, which the chart grants."""
    tools.build_all()
    local = LocalCluster(tmp_path_factory.mktemp("helm-plane") / "cluster",
                         log=lambda _line: None, apiserver_args=(
                             "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",))
    try:
        local.up()
        yield local
    finally:
        local.down(quiet=True)


@pytest.fixture(scope="module")
def helm(plane: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(plane, tmp_path_factory.mktemp("helm-home"))


def create_namespace(plane: LocalCluster, name: str) -> Kubectl:
    plane.kubectl("create", "namespace", name)
    wait_for(f"default service account in {name}", lambda: plane.kubectl(
        "get", "sa", "default", "-n", name, check=False).returncode == 0)
    return Kubectl(plane, name)


@dataclass
class Install:
    plane: LocalCluster
    release: str
    namespace: str
    notes: str
    started: float  # time.monotonic() when `helm install` began
    installed: float  # seconds `helm install` took
    workdir: Path
    operators: list[OperatorProcess] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def deployment(self) -> dict[str, Any]:
        return operator_deployment(self.plane, self.release, self.namespace)

    @property
    def account(self) -> str:
        return str(self.deployment["spec"]["template"]["spec"]["serviceAccountName"])

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"

    def can_i(self, verb: str, resource: str, namespace: str | None = None,
              user: str | None = None, subresource: str = "") -> bool:
        """`kubectl auth can-i` as the operator's account (or `user`); no namespace: in
        every namespace at once (cluster-wide)."""
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        if subresource:
            scope.append(f"--subresource={subresource}")
        out = self.plane.kubectl("auth", "can-i", verb, resource, f"--as={user or self.user}",
                                 *scope, check=False)
        assert out.stdout.strip() in ("yes", "no"), out.stdout + out.stderr
        return out.stdout.strip() == "yes"

    def start_operator(self, name: str) -> OperatorProcess:
        """The Deployment's container as a process here, as the chart's ServiceAccount."""
        op = operator_like_the_pod(self.plane, self.deployment, self.workdir / "operator",
                                   name)
        who = subprocess.run([str(tools.binary("kubectl")), f"--kubeconfig={op.kubeconfig}",
                              "auth", "whoami", "-o", "json"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == self.user, who
        self.operators.append(op)
        op.start()
        return op

    def lease_holder(self) -> str:
        lease = Kubectl(self.plane, self.namespace).get(
            "lease", self.deployment["metadata"]["name"])
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted((self.workdir / "operator").glob("*.log")))

    def assert_nothing_refused(self) -> None:
        log = self.logs()
        refused = [line for line in log.splitlines() if any(d in line for d in DENIED)]
        assert not refused, "\n".join(refused)

    def cluster_role(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.plane.kubectl("get", "clusterrole", name, "-o",
                                                  "json").stdout))


def install(helm: Helm, workdir: Path, release: str, namespace: str, *values: str) -> Install:
    """What the README tells a user to run."""
    started = time.monotonic()
    notes = helm.install(release, namespace, *values)
    return Install(helm.cluster, release, namespace, notes, started,
                   time.monotonic() - started, workdir)


def uninstall(inst: Install, helm: Helm, *namespaces: str) -> None:
    """The resources first, while the operator still releases their finalizers."""
    for ns in namespaces:
        inst.plane.kubectl("-n", ns, "delete", "modeldeployments,trainingruns", "--all",
                           "--timeout=60s", check=False)
    for op in inst.operators:
        op.stop()
    for ns in namespaces:
        inst.plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    helm.uninstall(inst.release, inst.namespace)


def operator_events(kubectl: Kubectl) -> list[dict[str, Any]]:
    items = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    return [e for e in items if (e.get("source") or {}).get("component") == COMPONENT]


def owned_by(obj: dict[str, Any] | None, kind: str, name: str) -> bool:
    return any(o["kind"] == kind and o["name"] == name
               for o in (obj or {}).get("metadata", {}).get("ownerReferences", []))


def first_reconcile(inst: Install, serving: Kubectl) -> None:
    """The sample ModelDeployment applied and its status first written: how long after
    `helm install` began the operator is at work."""
    serving.apply(sample(version=1))
    wait_for("a first reconcile", lambda: ((serving.get("md", "defects-dev") or {}).get(
        "status") or {}).get("observedGeneration"), timeout=60, interval=0.1)
    inst.timings["first reconcile"] = time.monotonic() - inst.started


def reconcile_both(inst: Install, serving: Kubectl, training: Kubectl) -> None:
    """A ModelDeployment becomes Ready with its Deployment and Services; a TrainingRun gets
    its Job; both get the operator's events, and nothing the operator asked was refused."""
    serving.apply(sample(version=1))
    try:
        wait_for("Ready v1", lambda: ready(serving, "defects-dev", 1), timeout=60)
        training.apply(training_run())
        wait_for("Job", lambda: training.get("job", "defects-v1-train"), timeout=60)
        wait_phase(training, "Evaluating")  # kwok reports the trainer's pod Ready at once
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{inst.logs()[-6000:]}") from None
    for kind in ("deployment", "service"):
        assert owned_by(serving.get(kind, "defects-dev-v1"), "ModelDeployment", "defects-dev")
    assert owned_by(training.get("job", "defects-v1-train"), "TrainingRun", "defects-v1")
    assert "ModelDeployment" in {e["involvedObject"]["kind"] for e in operator_events(serving)}
    assert "TrainingRun" in {e["involvedObject"]["kind"] for e in operator_events(training)}
    inst.assert_nothing_refused()


def report_timings(inst: Install) -> None:
    print(f"\n[{inst.release}] helm install {inst.installed:.1f}s; from its start: " + ", ".join(
        f"{what} {seconds:.1f}s" for what, seconds in inst.timings.items()))


def refusal(inst: Install, team: Kubectl, kind: str, name: str) -> dict[str, Any]:
    """The resource's ReconcileError condition, once there."""
    status = wait_for_status(
        f"{kind}/{name} ReconcileError", lambda: (team.get(kind, name) or {}).get("status") or {},
        lambda st: bool(condition({"status": st}, "ReconcileError")),
        timeout=60, context=lambda: inst.logs()[-4000:])
    return condition({"status": status}, "ReconcileError")


@pytest.fixture(scope="class")
def clusterwide(plane: LocalCluster, helm: Helm,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """The chart's defaults: one ClusterRole, every namespace."""
    inst = install(helm, tmp_path_factory.mktemp("cluster-wide"), "modelship", "modelship")
    try:
        op = inst.start_operator("host-0")
        inst.timings["operator live"] = time.monotonic() - inst.started
        wait_for("the operator holds the chart's Lease",
                 lambda: inst.lease_holder().startswith("host-0"), timeout=30)
        inst.timings["leader"] = time.monotonic() - inst.started
        first_reconcile(inst, create_namespace(plane, "team-a"))
        assert op.alive()
        yield inst
    finally:
        report_timings(inst)
        uninstall(inst, helm, "team-a", "team-b", "team-c")


class TestClusterWide:
    """The chart's defaults: one ClusterRole, every namespace."""

    @pytest.fixture
    def inst(self, clusterwide: Install) -> Install:
        return clusterwide

    def test_install_makes_the_charts_objects_and_its_pods_wait_for_a_node(
            self, inst: Install) -> None:
        kubectl = Kubectl(inst.plane, inst.namespace)
        for crd in ("modeldeployments.modelship.io", "trainingruns.modelship.io"):
            inst.plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}",
                               "--timeout=30s")
        assert "Watched namespaces: all (cluster-wide)" in inst.notes
        assert "ClusterRole and ClusterRoleBinding modelship-operator" in inst.notes
        assert "Role and RoleBinding modelship-operator-leader-election: the Lease " \
            "modelship-operator in modelship" in inst.notes
        assert "Monitoring: skipped" in inst.notes
        assert inst.account == "modelship-operator"
        assert kubectl.get("serviceaccount", inst.account) is not None
        # Two replicas asked for; neither may land on kwok's tainted nodes.
        pods = wait_for("the operator's pods, unschedulable", lambda: (
            found if len(found := [p for p in kubectl.list(
                "pod", "app.kubernetes.io/component=operator")
                if condition(p, "PodScheduled").get("reason") == "Unschedulable"]) == 2
            else None), timeout=30)
        assert {p["status"]["phase"] for p in pods} == {"Pending"}

    def test_operator_reconciles_with_the_charts_cluster_role_alone(
            self, inst: Install) -> None:
        team = Kubectl(inst.plane, "team-a")
        reconcile_both(inst, team, team)

    def test_the_account_may_do_its_work_and_no_more(self, inst: Install) -> None:
        can = inst.can_i
        for verb, resource in [("create", "deployments.apps"), ("delete", "deployments.apps"),
                               ("create", "jobs.batch"), ("watch", "pods"),
                               ("create", "events"),
                               ("create", "trainingruns.modelship.io")]:  # retraining
            assert can(verb, resource, "team-x"), (verb, resource)
        assert not can("create", "modeldeployments.modelship.io", "team-x")
        for resource in ("modeldeployments.modelship.io", "trainingruns.modelship.io"):
            assert can("patch", resource, "team-x", subresource="status")
            assert not can("update", resource, "team-x", subresource="status")
            assert not can("delete", resource, "team-x")
        for verb, resource in [("get", "secrets"), ("list", "secrets"),
                               ("list", "configmaps"), ("create", "pods")]:
            assert not can(verb, resource, "team-x"), (verb, resource)
        # Cluster-scoped: it reads the CRDs and changes nothing.
        assert can("list", "customresourcedefinitions.apiextensions.k8s.io")
        for verb, resource in [("delete", "clusterroles.rbac.authorization.k8s.io"),
                               ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
                               ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
                               ("list", "namespaces"), ("delete", "namespaces"),
                               ("list", "secrets")]:
            assert not can(verb, resource), (verb, resource)
        # The Lease: its own, by name, in the release namespace only.
        assert can("update", "leases.coordination.k8s.io/modelship-operator", "modelship")
        assert not can("update", "leases.coordination.k8s.io/someone-else", "modelship")
        assert not can("create", "leases.coordination.k8s.io", "team-x")

    def test_view_and_edit_grant_users_the_custom_resources(self, inst: Install) -> None:
        team = create_namespace(inst.plane, "team-b")
        team("create", "rolebinding", "alice-edits", "--clusterrole=edit", "--user=alice")
        team("create", "rolebinding", "bob-views", "--clusterrole=view", "--user=bob")
        md, tr = "modeldeployments.modelship.io", "trainingruns.modelship.io"
        # The controller manager aggregates the chart's ClusterRoles into edit and view.
        wait_for("edit aggregates modelship-edit", lambda: inst.can_i(
            "patch", md, "team-b", user="alice"), timeout=30)
        wait_for("view aggregates modelship-view", lambda: inst.can_i(
            "list", tr, "team-b", user="bob"), timeout=30)
        for verb in ("create", "delete", "patch", "get"):
            for resource in (md, tr):
                assert inst.can_i(verb, resource, "team-b", user="alice"), (verb, resource)
        assert not inst.can_i("patch", md, "team-b", user="alice", subresource="status")
        for verb in ("get", "list", "watch"):
            assert inst.can_i(verb, md, "team-b", user="bob")
        for verb in ("create", "patch", "delete"):
            assert not inst.can_i(verb, md, "team-b", user="bob"), verb
        # Only where they are bound.
        assert not inst.can_i("get", md, "team-a", user="alice")
        # And a real write through `edit`: the annotation `modelship promote` sets.
        team.apply(sample(version=1))
        out = inst.plane.kubectl("-n", "team-b", "--as=alice", "annotate", "md", "defects-dev",
                                 "modelship.io/command=pause@1", check=False)
        assert out.returncode == 0, out.stderr
        # The plane enforces owner references' permissions: edit may not block an MD's
        # deletion (the operator may: its rules grant modeldeployments/finalizers update).
        md_uid = (team.get("md", "defects-dev") or {})["metadata"]["uid"]
        child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "alices", "ownerReferences": [{
                "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
                "name": "defects-dev", "uid": md_uid, "blockOwnerDeletion": True}]}}
        out = inst.plane.kubectl("-n", "team-b", "--as=alice", "create", "-f", "-",
                                 input_text=json.dumps(child), check=False)
        assert "cannot set blockOwnerDeletion" in out.stderr, out.stdout + out.stderr
        assert inst.can_i("update", "modeldeployments.modelship.io", "team-b",
                          subresource="finalizers")

    def test_a_verb_taken_away_is_reported_on_the_resource(self, inst: Install) -> None:
        """Bad input: the ClusterRole loses `patch` on Jobs and on Deployments (server-side
        apply is a patch). A new TrainingRun and a new ModelDeployment each say why in a
        condition and an event, with the API server's message; given back, they proceed."""
        name = "modelship-operator"
        original = inst.cluster_role(name)
        cut = json.loads(json.dumps(original))
        for rule in cut["rules"]:
            if set(rule["apiGroups"]) & {"batch", "apps"}:
                rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
        inst.plane.kubectl("replace", "-f", "-", input_text=json.dumps(cut))
        team = create_namespace(inst.plane, "team-c")
        wait_for("the cut in effect", lambda: not inst.can_i("patch", "jobs.batch", "team-c"))
        try:
            team.apply(training_run())
            team.apply(sample(version=1))
            refused = {
                "tr": ('jobs.batch "defects-v1-train" is forbidden: User '
                       f'"{inst.user}" cannot patch resource "jobs" in API group "batch" in '
                       'the namespace "team-c"'),
                "md": ('deployments.apps "defects-dev-v1" is forbidden: User '
                       f'"{inst.user}" cannot patch resource "deployments" in API group '
                       '"apps" in the namespace "team-c"'),
            }
            for kind, name_ in (("tr", "defects-v1"), ("md", "defects-dev")):
                cond = refusal(inst, team, kind, name_)
                assert cond["status"] == "True" and cond["reason"] == "Forbidden"
                assert refused[kind] in cond["message"], cond
                assert "(403 Forbidden)" in cond["message"]
            warnings = [e for e in operator_events(team) if e["type"] == "Warning"
                        and e["reason"] == "Forbidden"]
            assert {e["involvedObject"]["kind"] for e in warnings} == \
                {"TrainingRun", "ModelDeployment"}, warnings
            for event in warnings:
                kind = "tr" if event["involvedObject"]["kind"] == "TrainingRun" else "md"
                assert refused[kind] in event["message"], event
            # One event per distinct error, not one per retry (every 5 s).
            seen = len(warnings)
            wait_for("another refused pass of each", lambda: inst.logs().count(
                "reconcile failed, retrying") >= 4, timeout=30)
            assert len([e for e in operator_events(team) if e["reason"] == "Forbidden"]) \
                == seen
        finally:
            restored = {k: v for k, v in original.items() if k != "metadata"}
            restored["metadata"] = {k: v for k, v in original["metadata"].items()
                                    if k not in ("resourceVersion", "uid", "managedFields",
                                                 "creationTimestamp")}
            inst.plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                               input_text=json.dumps(restored))
        wait_for("Job once patch is granted", lambda: team.get("job", "defects-v1-train"),
                 timeout=60)
        wait_for("Ready once patch is granted", lambda: ready(team, "defects-dev", 1),
                 timeout=60)
        for kind, name_ in (("tr", "defects-v1"), ("md", "defects-dev")):
            wait_for(f"{kind} ReconcileError gone", lambda k=kind, n=name_: not condition(
                team.get(k, n), "ReconcileError"), timeout=30)


WATCHED = ("ml-team-a", "ml-team-b")


@pytest.fixture(scope="class")
def namespaced(plane: LocalCluster, helm: Helm,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """`watchNamespaces`: a Role in each watched namespace, cluster-wide reads only; two
    operator processes share the chart's Lease."""
    for ns in (*WATCHED, "outside"):
        create_namespace(plane, ns)
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump({"watchNamespaces": list(WATCHED)}))
    inst = install(helm, tmp_path_factory.mktemp("namespaced"), "ml", "ml-ops",
                   "-f", str(values))
    try:
        inst.start_operator("host-a")
        inst.timings["operator live"] = time.monotonic() - inst.started
        wait_for("host-a leads", lambda: inst.lease_holder().startswith("host-a"),
                 timeout=30)
        inst.timings["leader"] = time.monotonic() - inst.started
        first_reconcile(inst, Kubectl(plane, WATCHED[0]))
        inst.start_operator("host-b")
        yield inst
    finally:
        report_timings(inst)
        uninstall(inst, helm, *WATCHED, "outside")


class TestNamespaced:
    """Namespaces listed in `watchNamespaces` only."""

    @pytest.fixture
    def inst(self, namespaced: Install) -> Install:
        return namespaced

    def test_operator_reconciles_in_the_watched_namespaces_only(self, inst: Install) -> None:
        assert "Watched namespaces: ml-team-a, ml-team-b" in inst.notes
        assert inst.account == "ml-modelship-operator"
        a, b = (Kubectl(inst.plane, ns) for ns in WATCHED)
        outside = Kubectl(inst.plane, "outside")
        outside.apply(sample(version=1))
        reconcile_both(inst, a, b)
        # Long after the watched ones were served, the other namespace's is untouched.
        assert "status" not in (outside.get("md", "defects-dev") or {})
        assert outside.list("deployment") == []

    def test_the_account_is_confined_to_the_watched_namespaces(self, inst: Install) -> None:
        can = inst.can_i
        for ns in WATCHED:
            assert can("create", "deployments.apps", ns)
            assert can("patch", "trainingruns.modelship.io", ns, subresource="status")
            assert not can("get", "secrets", ns)
            assert not can("list", "secrets", ns)
        for verb, resource in [("create", "deployments.apps"), ("list", "pods"),
                               ("get", "modeldeployments.modelship.io"),
                               ("create", "events"), ("get", "secrets")]:
            assert not can(verb, resource, "outside"), (verb, resource)
            assert not can(verb, resource), (verb, resource)  # nor anywhere at once
        # Cluster-wide it reads, and only CRDs and namespaces: no delete of anything.
        assert can("list", "namespaces") and can("watch", "namespaces")
        assert can("list", "customresourcedefinitions.apiextensions.k8s.io")
        for resource in ("clusterroles.rbac.authorization.k8s.io", "namespaces",
                         "customresourcedefinitions.apiextensions.k8s.io",
                         "clusterrolebindings.rbac.authorization.k8s.io", "nodes"):
            assert not can("delete", resource), resource
            assert not can("create", resource), resource
        for role in (r for r in json.loads(inst.plane.kubectl(
                "get", "clusterrole", "-l", "app.kubernetes.io/instance=ml", "-o",
                "json").stdout)["items"]
                if not any(k.startswith("rbac.authorization.k8s.io/aggregate-to")
                           for k in r["metadata"].get("labels", {}))):
            verbs = {v for rule in role["rules"] for v in rule["verbs"]}
            assert verbs <= {"get", "list", "watch"}, role

    def test_the_standby_takes_over_under_the_charts_lease_role(self, inst: Install) -> None:
        leader, standby = inst.operators
        health = standby.health()
        assert health["role"] == "standby" and health["holder"].startswith("host-a"), health
        leader.kill()  # as when its node dies: no release, the Lease must expire
        killed = time.monotonic()
        wait_for("host-b leads", lambda: inst.lease_holder().startswith("host-b"), timeout=40)
        print(f"\n[ml] standby took the Lease {time.monotonic() - killed:.1f}s after the "
              "leader was killed")
        a = Kubectl(inst.plane, WATCHED[0])
        a.apply(sample(version=2))
        wait_for("Ready v2 under the new leader", lambda: ready(a, "defects-dev", 2),
                 timeout=60)
        inst.assert_nothing_refused()
