"""The local node agent: pods bound to its node run from their images as real processes in
their own network namespaces, with real probes, exit codes, termination messages, volumes
and deletion; images the store lacks leave them waiting, as a kubelet's pull errors do."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelship.core.triton_manifests import VIEW_MOUNT, view_script
from modelship_api.modeldeployment import Runtime
from modelship_dev import images, imagestore, tools
from modelship_dev.cluster import LocalCluster, ensure_images
from modelship_dev.nodeagent import hostnet
from tests import ocilayout
from tests.conftest import Kubectl, wait_for

pytestmark = pytest.mark.integration

NODE = "local-0"
TAINT_KEY = "modelship.io/local-processes"
PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"modelship.io/node-class": "local"},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}
# Python, sh and coreutils, user 65532: what most tests here run.
OPERATOR = images.ref("operator")
TRITON = images.ref("triton")


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    return [p.name for p in Path("/sys/class/net").iterdir()]


def _processes_with(text: str) -> list[int]:
    """Pids whose command line or environment holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def store(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's image store: the operator's and Triton's images of `make images`, and
    whatever a test adds."""
    ensure_images(tmp_path_factory.mktemp("images") / "build.log")
    return ocilayout.new_store(tmp_path_factory.mktemp("store") / "oci", [OPERATOR, TRITON])


@pytest.fixture(scope="module")
def agent(cluster: LocalCluster, store: Path) -> Iterator[Path]:
    """The node agent, started with the cluster's hook; afterwards nothing may be left."""
    if os.geteuid() != 0:
        pytest.fail("the node agent needs root (network and mount namespaces)")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.fail("the node agent needs `ip` (iproute2) and `nsenter` (util-linux)")
    folder = cluster.start_node_agent(NODE, taints=[f"{TAINT_KEY}=true:NoSchedule"],
                                      image_store=store)
    tag = hostnet.agent_tag(folder)
    try:
        yield folder
    finally:
        cluster.stop_node_agent(NODE)
        assert [n for n in _netns() if n.startswith(f"ms-{tag}-")] == []
        assert [n for n in _links() if n.startswith(f"ms{tag}")] == []
        assert _processes_with(str(folder)) == []
        assert not (folder / "pods").exists() or list((folder / "pods").iterdir()) == []
        assert cluster.kubectl("get", "node", NODE, check=False).returncode != 0


def _pod_spec(containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {**PLACEMENT, "terminationGracePeriodSeconds": 5, "containers": containers, **extra}


def _pod(name: str, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": _pod_spec(containers, **extra)}


def _condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def _only_pod(kubectl: Kubectl, selector: str) -> dict[str, Any] | None:
    pods = kubectl.list("pods", selector)
    return pods[0] if len(pods) == 1 else None


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code
    except httpx.HTTPError:
        return None


def test_node_is_ready_and_its_lease_renews(cluster: LocalCluster, agent: Path) -> None:
    node = json.loads(cluster.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert _condition(node, "Ready") == "True"
    assert node["metadata"]["labels"]["modelship.io/node-class"] == "local"
    assert "kwok.x-k8s.io/node" not in (node["metadata"].get("annotations") or {})
    assert {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]

    def renew_time() -> str:
        lease = cluster.kubectl("get", "lease", NODE, "-n", "kube-node-lease", "-o", "json")
        return str(json.loads(lease.stdout)["spec"]["renewTime"])

    first = renew_time()
    wait_for("lease renewal", lambda: renew_time() != first, timeout=40, interval=1)


def test_deployment_is_ready_only_once_it_serves(kubectl: Kubectl, agent: Path) -> None:
    labels = {"app": "web"}
    container = {"name": "web", "image": OPERATOR,
                 "command": ["sh", "-c", "sleep 4; exec python -m http.server 8080"],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                    "periodSeconds": 1}}
    kubectl.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels},
                                         "spec": _pod_spec([container])}}})
    kubectl.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}})
    pod = wait_for("pod running with an address", lambda: (p := _only_pod(kubectl, "app=web"))
                   and p["status"].get("phase") == "Running" and p["status"].get("podIP")
                   and p, timeout=90)
    ip = pod["status"]["podIP"]
    address = ipaddress.ip_address(ip)
    assert not address.is_loopback and address in hostnet.GATEWAY.network
    assert pod["spec"]["nodeName"] == NODE and pod["status"]["hostIP"] == str(hostnet.GATEWAY.ip)
    # Before the server listens the pod runs but is not Ready.
    assert _condition(pod, "Ready") == "False" and _get(f"http://{ip}:8080/") is None
    wait_for("pod Ready", lambda: _condition(_only_pod(kubectl, "app=web"), "Ready") == "True",
             timeout=60)
    assert _get(f"http://{ip}:8080/") == 200

    def ready_endpoints() -> list[str]:
        slices = kubectl.list("endpointslices", "kubernetes.io/service-name=web")
        return [a for s in slices for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready") for a in e["addresses"]]

    assert wait_for("endpoint slice", ready_endpoints, timeout=30) == [ip]


def test_failing_readiness_probe_never_becomes_ready(kubectl: Kubectl, agent: Path) -> None:
    kubectl.apply(_pod("unready", [{
        "name": "web", "image": OPERATOR, "command": ["python", "-m", "http.server", "8080"],
        "readinessProbe": {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1,
                           "failureThreshold": 1}}]))
    wait_for("server answering", lambda: (p := kubectl.get("pod", "unready"))
             and p["status"].get("podIP")
             and _get(f"http://{p['status']['podIP']}:8080/") == 200, timeout=90)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        pod = kubectl.get("pod", "unready")
        assert pod is not None and _condition(pod, "Ready") == "False"
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] is False and "running" in status["state"]
        time.sleep(0.5)


def test_exec_probe_runs_inside_the_container(kubectl: Kubectl, agent: Path) -> None:
    # The same path exists on the host: a probe that looked there (for instance while the
    # container's root was still being built) would make the pod Ready too early.
    decoy = Path(f"/tmp/modelship-probe-{kubectl.namespace}/ready")
    decoy.parent.mkdir()
    decoy.touch()
    try:
        kubectl.apply(_pod("marker", [{
            "name": "work", "image": OPERATOR,
            "command": ["sh", "-c", f"sleep 4; touch {decoy}; exec sleep 600"],
            "readinessProbe": {"exec": {"command": ["test", "-e", str(decoy)]},
                               "periodSeconds": 1}}]))
        # Not Ready while the container's own /tmp lacks the file (its folder too: touch
        # fails there, so the file never appears and the pod never becomes Ready) ...
        started = time.monotonic()
        while time.monotonic() - started < 8:
            assert _condition(kubectl.get("pod", "marker"), "Ready") != "True"
            time.sleep(0.5)
    finally:
        decoy.unlink()
        decoy.parent.rmdir()
    # ... and Ready once the container creates it in its own /tmp.
    kubectl.apply(_pod("marker2", [{
        "name": "work", "image": OPERATOR,
        "command": ["sh", "-c", "sleep 2; mkdir -p /tmp/m; touch /tmp/m/ready; exec sleep 600"],
        "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/m/ready"]},
                           "periodSeconds": 1}}]))
    wait_for("pod Ready by its exec probe",
             lambda: _condition(kubectl.get("pod", "marker2"), "Ready") == "True", timeout=90)
    # The container's /tmp is its own: the host has no such file.
    assert not Path("/tmp/m/ready").exists()


def _job(name: str, script: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": _pod_spec([{
                "name": "main", "image": OPERATOR, "command": ["python", "-c", script],
                "terminationMessagePath": "/dev/termination-log"}],
                restartPolicy="Never")}}}


def _job_condition(kubectl: Kubectl, name: str) -> str | None:
    job = kubectl.get("job", name)
    for cond in (job or {}).get("status", {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


def test_job_outcome_comes_from_the_real_exit_code(kubectl: Kubectl, agent: Path) -> None:
    message = json.dumps({"result": "rejected", "accuracy": 0.42})
    kubectl.apply(_job("fails", "import sys\n"
                       f"open('/dev/termination-log', 'w').write({message!r})\nsys.exit(3)"))
    kubectl.apply(_job("passes", "print('done')"))
    assert wait_for("failing job", lambda: _job_condition(kubectl, "fails"),
                    timeout=120) == "Failed"
    pod = _only_pod(kubectl, "job-name=fails")
    assert pod is not None and pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert terminated["message"] == message
    assert wait_for("passing job", lambda: _job_condition(kubectl, "passes"),
                    timeout=120) == "Complete"
    pod = _only_pod(kubectl, "job-name=passes")
    assert pod is not None and pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_volumes_and_init_containers(kubectl: Kubectl, agent: Path, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # the image's user writes there
    (tmp_path / "in.txt").write_text("from the host")
    mounts = [{"name": "host", "mountPath": "/hostdata"},
              {"name": "scratch", "mountPath": "/scratch"}]
    kubectl.apply(_pod("volumes", [{
        "name": "main", "image": OPERATOR, "volumeMounts": mounts,
        "command": ["sh", "-c", "cat /hostdata/in.txt /scratch/init.txt > /hostdata/out.txt"]}],
        restartPolicy="Never",
        initContainers=[{"name": "init", "image": OPERATOR, "volumeMounts": mounts,
                         "command": ["sh", "-c", "printf ' and init' > /scratch/init.txt"]}],
        volumes=[{"name": "host", "hostPath": {"path": str(tmp_path), "type": "Directory"}},
                 {"name": "scratch", "emptyDir": {}}]))
    pod = wait_for("pod Succeeded", lambda: (p := kubectl.get("pod", "volumes"))
                   and p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert (tmp_path / "out.txt").read_text() == "from the host and init"
    assert _condition(pod, "Initialized") == "True"
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert init["exitCode"] == 0


def test_container_that_cannot_be_created_yet_is_retried(kubectl: Kubectl, agent: Path,
                                                         tmp_path: Path) -> None:
    """A hostPath that appears later (a TrainingRun publishing into the folder a Triton pod
    serves from): CreateContainerConfigError until then, then the container runs."""
    folder = tmp_path / "later"
    kubectl.apply(_pod("later", [{
        "name": "main", "image": OPERATOR, "volumeMounts": [{"name": "d", "mountPath": "/d"}],
        "command": ["sh", "-c", "cat /d/file"]}], restartPolicy="Never",
        volumes=[{"name": "d", "hostPath": {"path": str(folder), "type": "Directory"}}]))
    waiting = wait_for("CreateContainerConfigError", lambda: (p := kubectl.get("pod", "later"))
                       and (s := (p["status"].get("containerStatuses") or [{}])[0])
                       .get("state", {}).get("waiting", {}).get("reason")
                       == "CreateContainerConfigError" and s, timeout=90)
    assert str(folder) in waiting["state"]["waiting"]["message"]
    folder.mkdir()
    (folder / "file").write_text("here")
    pod = wait_for("pod finished", lambda: (p := kubectl.get("pod", "later"))
                   and p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0


def test_crashing_container_restarts(kubectl: Kubectl, agent: Path) -> None:
    kubectl.apply(_pod("crash", [{"name": "main", "image": OPERATOR,
                                  "command": ["sh", "-c", "echo boom; exit 7"],
                                  "terminationMessagePolicy": "FallbackToLogsOnError"}]))
    status = wait_for("a restart", lambda: (p := kubectl.get("pod", "crash"))
                      and (s := (p["status"].get("containerStatuses") or [{}])[0])
                      .get("restartCount", 0) >= 1 and s, timeout=90)
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 7 and last["message"].strip() == "boom"


class PodWatch:
    """Every change of one pod as the API server streams it (`kubectl get --watch`), read
    in a thread: what a Job controller or a user sees, in order."""

    def __init__(self, kubectl: Kubectl, name: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.proc = subprocess.Popen(
            [str(tools.binary("kubectl")), f"--kubeconfig={kubectl.cluster.kubeconfig}",
             "-n", kubectl.namespace, "get", "pod", name, "-o", "json", "--watch",
             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            self.events.append((event["type"], event["object"]))

    def until_deleted(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        wait_for("the pod's DELETED event", lambda: any(t == "DELETED" for t, _ in self.events),
                 timeout=timeout)
        return list(self.events)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _last_status_before_deletion(events: list[tuple[str, dict[str, Any]]]
                                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The delete request as the API server recorded it (deletionTimestamp = request +
    grace) and the pod as it was when it went, every change in between checked to be in
    the kubelet's order (never gone while Running)."""
    deleting = [o for t, o in events if o["metadata"].get("deletionTimestamp")]
    assert deleting, events
    assert events[-1][0] == "DELETED"
    # Until its containers are stopped the phase stays Running; once it is terminal it
    # never goes back; the object goes only after that.
    phases = [o["status"].get("phase") for o in deleting]
    terminal = [i for i, p in enumerate(phases) if p in ("Succeeded", "Failed")]
    assert terminal, phases
    assert all(p in ("Succeeded", "Failed") for p in phases[terminal[0]:]), phases
    return deleting[0]["metadata"], deleting[-1]


def test_deleted_pod_runs_its_pre_stop_hook_then_ends_with_a_terminal_status(
        kubectl: Kubectl, agent: Path, tmp_path: Path) -> None:
    """preStop (exec in one container, sleep in the other), then SIGTERM; both exit 0 on
    SIGTERM, so the pod (restartPolicy Always) ends Succeeded with its containers
    terminated, written before the object goes, well within its grace period."""
    tmp_path.chmod(0o777)
    mounts = [{"name": "out", "mountPath": "/out"}]
    kubectl.apply(_pod("graceful", [{
        "name": "main", "image": OPERATOR, "volumeMounts": mounts,
        "command": ["sh", "-c", "trap 'echo term >> /out/order; exit 0' TERM; "
                    "echo started > /out/started; while true; do sleep 0.2; done"],
        "lifecycle": {"preStop": {"exec": {"command": [
            "sh", "-c", "test -e /out/started && echo preStop >> /out/order"]}}}}, {
        "name": "slow", "image": OPERATOR, "volumeMounts": mounts,
        "command": ["sh", "-c", "trap 'date +%s.%N > /out/slow-term; exit 0' TERM; "
                    "while true; do sleep 0.2; done"],
        "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}],
        terminationGracePeriodSeconds=30,
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path), "type": "Directory"}}]))
    wait_for("container running", lambda: (tmp_path / "started").exists(), timeout=90)
    watch = PodWatch(kubectl, "graceful")
    try:
        wait_for("the watch's first event", lambda: watch.events, timeout=30)
        requested = time.time()
        kubectl("delete", "pod", "graceful", "--wait=false")
        events = watch.until_deleted(timeout=60)
    finally:
        watch.close()
    assert (tmp_path / "order").read_text().split() == ["preStop", "term"]
    # The sleep hook held SIGTERM back for its 3 s.
    assert float((tmp_path / "slow-term").read_text()) - requested >= 3
    request, last = _last_status_before_deletion(events)
    assert last["status"]["phase"] == "Succeeded"
    assert request["deletionGracePeriodSeconds"] == 30
    for status in last["status"]["containerStatuses"]:
        terminated = status["state"]["terminated"]
        assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
        assert status["ready"] is False
    assert _condition(last, "Ready") == "False"
    # Within the grace period: the API server set deletionTimestamp = delete + 30 s.
    assert _at(terminated["finishedAt"]) < _at(request["deletionTimestamp"])


def test_deleting_a_pod_kills_its_processes(kubectl: Kubectl, agent: Path) -> None:
    marker = f"ms-test-{uuid.uuid4().hex}"
    # Ignores SIGTERM (the child inherits that): only the SIGKILL after the grace ends it.
    kubectl.apply(_pod("victim", [{
        "name": "main", "image": OPERATOR, "env": [{"name": "MARKER", "value": marker}],
        "command": ["sh", "-c", "trap '' TERM; python -c 'import time; time.sleep(600)' & wait"]
    }], terminationGracePeriodSeconds=30))
    pids = wait_for("processes running", lambda: len(found := _processes_with(marker)) >= 2
                    and found, timeout=90)
    pod = kubectl.get("pod", "victim")
    assert pod is not None
    netns, veth = hostnet.pod_names(hostnet.agent_tag(agent), pod["metadata"]["uid"])
    assert netns in _netns() and veth in _links()
    watch = PodWatch(kubectl, "victim")
    try:
        wait_for("the watch's first event", lambda: watch.events, timeout=30)
        # The deletion's grace period overrides the pod's 30 s.
        kubectl("delete", "pod", "victim", "--wait=false", "--grace-period=3")
        events = watch.until_deleted(timeout=60)
    finally:
        watch.close()
    request, last = _last_status_before_deletion(events)
    assert last["status"]["phase"] == "Failed"
    terminated = last["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137 and terminated["reason"] == "Error"  # SIGKILL
    # Not before the grace period was over (deletionTimestamp = delete + 3 s; both in whole
    # seconds, the kill's rounded down like the deadline's).
    assert request["deletionGracePeriodSeconds"] == 3
    assert _at(terminated["finishedAt"]) >= _at(request["deletionTimestamp"])
    assert _processes_with(marker) == []
    assert not any(_alive(pid) for pid in pids)
    assert netns not in _netns() and veth not in _links()


def test_deleted_job_pod_is_counted_failed_and_goes(kubectl: Kubectl, agent: Path) -> None:
    """A Job pod keeps its job-tracking finalizer until its phase is terminal: deleted while
    running, it must end Failed (killed by SIGTERM), be counted by the Job and go."""
    job = _job("long", "import time; time.sleep(600)")
    job["spec"]["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {
        "containerName": "main", "operator": "In", "values": [42]}}]}
    kubectl.apply(job)
    pod = wait_for("Job pod running", lambda: (p := _only_pod(kubectl, "job-name=long"))
                   and p["status"].get("phase") == "Running" and p, timeout=90)
    name = pod["metadata"]["name"]
    assert "batch.kubernetes.io/job-tracking" in pod["metadata"]["finalizers"]
    watch = PodWatch(kubectl, name)
    try:
        wait_for("the watch's first event", lambda: watch.events, timeout=30)
        kubectl("delete", "pod", name, "--wait=false")
        events = watch.until_deleted(timeout=60)
    finally:
        watch.close()
    _, last = _last_status_before_deletion(events)
    assert last["status"]["phase"] == "Failed"
    assert last["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    assert wait_for("Job failed", lambda: _job_condition(kubectl, "long"),
                    timeout=60) == "Failed"
    status = (kubectl.get("job", "long") or {})["status"]
    assert status["failed"] == 1 and not status.get("terminating")


ECHO_CONFIG = """name: "echo"
backend: "python"
max_batch_size: 0
input [{ name: "IN", data_type: TYPE_FP32, dims: [ -1 ] }]
output [{ name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] }]
"""
ECHO_MODEL = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def test_triton_pod_serves_from_its_image(kubectl: Kubectl, agent: Path,
                                          tmp_path: Path) -> None:
    """The operator's init script and `tritonserver` command, as its Deployments run them,
    in the Triton image (its Python backend, as the image's user)."""
    tmp_path.chmod(0o755)
    (tmp_path / "echo" / "1").mkdir(parents=True)
    (tmp_path / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)
    (tmp_path / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    mounts = [{"name": "repo", "mountPath": "/models", "readOnly": True},
              {"name": "view", "mountPath": VIEW_MOUNT}]

    def probe(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 1,
                "timeoutSeconds": 2, "failureThreshold": 120}

    kubectl.apply(_pod("triton", [{
        "name": "triton", "image": TRITON, "command": ["tritonserver"],
        "args": [f"--model-repository={VIEW_MOUNT}", "--model-control-mode=explicit",
                 "--load-model=echo", "--strict-readiness=true", "--http-port=8000",
                 "--grpc-port=8001", "--metrics-port=8002"],
        "ports": [{"name": "http", "containerPort": 8000}],
        "startupProbe": probe("/v2/health/live"),
        "readinessProbe": probe("/v2/models/echo/versions/1/ready"),
        "volumeMounts": mounts, "terminationMessagePolicy": "FallbackToLogsOnError"}],
        initContainers=[{"name": "select-version", "image": TRITON, "volumeMounts": mounts,
                         "command": ["sh", "-c", view_script(
                             "/models", "echo", 1, Runtime(backend="python"))]}],
        volumes=[{"name": "repo", "hostPath": {"path": str(tmp_path), "type": "Directory"}},
                 {"name": "view", "emptyDir": {}}]))
    pod = wait_for("Triton Ready", lambda: (p := kubectl.get("pod", "triton"))
                   and _condition(p, "Ready") == "True" and p, timeout=180, interval=1)
    resp = httpx.post(f"http://{pod['status']['podIP']}:8000/v2/models/echo/infer",
                      json={"inputs": [{"name": "IN", "datatype": "FP32", "shape": [3],
                                        "data": [1, 2, 3]}]}, timeout=10, trust_env=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0]


def _waiting(pod: dict[str, Any] | None, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = ((pod or {}).get("status") or {}).get(key) or [{}]
    return dict(statuses[0].get("state", {}).get("waiting") or {})


def test_missing_image_waits_with_pull_errors_then_starts(
        kubectl: Kubectl, agent: Path, store: Path) -> None:
    """No registry and no host binaries: a pod whose image the store lacks waits with the
    kubelet's ErrImagePull and ImagePullBackOff naming the image, and starts once the image
    is there (as after `make images`); with imagePullPolicy Never it is ErrImageNeverPull."""
    late = f"localhost/modelship-test/late-{kubectl.namespace}:1"
    kubectl.apply(_pod("late", [{"name": "main", "image": late,
                                 "command": ["sh", "-c", "echo started"]}],
                       restartPolicy="Never"))
    never = f"localhost/modelship-test/never-{kubectl.namespace}:1"
    kubectl.apply(_pod("never", [{"name": "main", "image": never, "imagePullPolicy": "Never",
                                  "command": ["sh", "-c", "echo started"]}],
                       restartPolicy="Never"))
    watch = PodWatch(kubectl, "late")
    try:
        # The agent retries with back-off: each try shows ErrImagePull, each wait
        # ImagePullBackOff, so both appear whenever the watch began.
        def reasons() -> list[str]:
            return [w["reason"] for _, o in list(watch.events) if (w := _waiting(o))]
        wait_for("ErrImagePull and ImagePullBackOff", lambda: {
            "ErrImagePull", "ImagePullBackOff"} <= set(reasons()), timeout=90)
        for _, obj in list(watch.events):
            waiting = _waiting(obj)
            if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"):
                assert f'"{late}"' in waiting["message"], waiting
                assert obj["status"]["phase"] == "Pending"
    finally:
        watch.close()
    waiting = wait_for("ErrImageNeverPull", lambda: (w := _waiting(kubectl.get("pod", "never")))
                       .get("reason") == "ErrImageNeverPull" and w, timeout=60)
    assert waiting["message"].startswith(f'Container image "{never}" is not present with '
                                         "pull policy of Never")

    ocilayout.derive(store, late, OPERATOR)
    pod = wait_for("the pod ran once its image exists", lambda: (p := kubectl.get("pod", "late"))
                   and p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    status = pod["status"]["containerStatuses"][0]
    digest = imagestore.index(store)[late]["digest"]
    assert status["imageID"] == f"{late.rsplit(':', 1)[0]}@{digest}"
    assert _waiting(kubectl.get("pod", "never"))["reason"] == "ErrImageNeverPull"


# Reports what the container runs with into its termination message.
REPORT = ("import json, os, sys\n"
          "open('/dev/termination-log', 'w').write(json.dumps({'argv': sys.argv[1:], "
          "'env': {k: os.environ.get(k) for k in ('FROM_IMAGE', 'SHARED', 'FROM_POD')}, "
          "'cwd': os.getcwd(), 'ids': [os.getuid(), os.getgid()]}))\n")


def _report(kubectl: Kubectl, name: str) -> dict[str, Any]:
    pod = wait_for(f"pod {name} finished", lambda: (p := kubectl.get("pod", name))
                   and p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pod["status"]["phase"] == "Succeeded", terminated
    report: dict[str, Any] = json.loads(terminated["message"])
    return report


def test_image_config_and_its_overrides_follow_kubernetes(
        kubectl: Kubectl, agent: Path, store: Path) -> None:
    """Entrypoint, Cmd, Env, WorkingDir and User come from the image; `command` replaces the
    Entrypoint and drops the Cmd, `args` alone replace the Cmd, `env` goes over the image's
    Env, runAsUser/runAsGroup over its User."""
    ref = f"localhost/modelship-test/report-{kubectl.namespace}:1"
    env = [*imagestore.resolve(OPERATOR, store).env, "FROM_IMAGE=image", "SHARED=image"]
    ocilayout.derive(store, ref, OPERATOR, Entrypoint=["python", "-c", REPORT, "entrypoint"],
                     Cmd=["from-cmd"], Env=env, WorkingDir="/opt/work", User="1234:2345")
    kubectl.apply(_pod("defaults", [{"name": "main", "image": ref}], restartPolicy="Never"))
    pod_env = [{"name": "FROM_POD", "value": "pod"}, {"name": "SHARED", "value": "pod"}]
    kubectl.apply(_pod("args", [{"name": "main", "image": ref, "env": pod_env,
                                 "args": ["$(FROM_POD)-arg"]}], restartPolicy="Never"))
    kubectl.apply(_pod("command", [{
        "name": "main", "image": ref, "command": ["python", "-c", REPORT, "command"],
        "args": ["a"], "workingDir": "/tmp",
        "securityContext": {"runAsUser": 4321, "runAsGroup": 99}}], restartPolicy="Never"))

    assert _report(kubectl, "defaults") == {
        "argv": ["entrypoint", "from-cmd"], "cwd": "/opt/work", "ids": [1234, 2345],
        "env": {"FROM_IMAGE": "image", "SHARED": "image", "FROM_POD": None}}
    assert _report(kubectl, "args") == {
        "argv": ["entrypoint", "pod-arg"], "cwd": "/opt/work", "ids": [1234, 2345],
        "env": {"FROM_IMAGE": "image", "SHARED": "pod", "FROM_POD": "pod"}}
    assert _report(kubectl, "command") == {
        "argv": ["command", "a"], "cwd": "/tmp", "ids": [4321, 99],
        "env": {"FROM_IMAGE": "image", "SHARED": "image", "FROM_POD": None}}


WRITES = ("import json, os\n"
          "def write(path):\n"
          "    try:\n"
          "        open(path, 'w').write('x')\n"
          "        return 'ok'\n"
          "    except OSError as err:\n"
          "        return err.errno\n"
          "open('/dev/termination-log', 'w').write(json.dumps({'ids': [os.getuid(), "
          "os.getgid()], 'tmp': write('/tmp/x'), 'scratch': write('/scratch/x')}))\n")


def test_read_only_root_filesystem_refuses_writes_outside_volumes(
        kubectl: Kubectl, agent: Path) -> None:
    """The image's root is read-only with readOnlyRootFilesystem (EROFS, even in /tmp); its
    volumes stay writable. Without it each container writes into a layer of its own, as
    the image's user (65532 for modelship's images)."""
    volume = {"volumes": [{"name": "scratch", "emptyDir": {}}]}
    container = {"image": OPERATOR, "command": ["python", "-c", WRITES],
                 "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
    kubectl.apply(_pod("readonly", [{"name": "main", **container, "securityContext": {
        "readOnlyRootFilesystem": True}}], restartPolicy="Never", **volume))
    kubectl.apply(_pod("writable", [{"name": "main", **container}], restartPolicy="Never",
                       **volume))
    assert _report(kubectl, "readonly") == {"ids": [65532, 65532], "tmp": 30, "scratch": "ok"}
    assert _report(kubectl, "writable") == {"ids": [65532, 65532], "tmp": "ok",
                                            "scratch": "ok"}


IN_CLUSTER = ("import json\n"
              "from lightkube import Client, KubeConfig\n"
              "from lightkube.resources.authentication_v1 import SelfSubjectReview\n"
              "client = Client(KubeConfig.from_service_account())\n"
              "review = client.create(SelfSubjectReview(metadata={}))\n"
              "open('/dev/termination-log', 'w').write(json.dumps({"
              "'user': review.status.userInfo.username, 'namespace': open("
              "'/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()}))\n")


def test_operator_image_reaches_the_api_server_with_the_in_cluster_config(
        kubectl: Kubectl, agent: Path) -> None:
    """What the operator does when it runs as a pod: KUBERNETES_SERVICE_HOST/PORT and the
    service-account volume (token, ca.crt, namespace) make an authenticated, verified
    request to the API server, as the pod's service account."""
    kubectl.apply(_pod("in-cluster", [{"name": "main", "image": OPERATOR,
                                       "command": ["python", "-c", IN_CLUSTER]}],
                       restartPolicy="Never"))
    assert _report(kubectl, "in-cluster") == {
        "user": f"system:serviceaccount:{kubectl.namespace}:default",
        "namespace": kubectl.namespace}
