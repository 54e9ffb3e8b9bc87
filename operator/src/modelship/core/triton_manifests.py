"""Render the Kubernetes objects that serve one model version with Triton (pure: dicts out).

Each version runs in its own Deployment and Service, so a bad model cannot take the stable
one down. The model repository is shared by every version, so an init container builds a
per-pod repository view that holds only this version (a symlink) and a config.pbtxt: the
published one's tensors and warmup, with the serving config the ModelDeployment owns
(core.serving_config: backend, batching, instance groups, and `version_policy: specific`
so Triton loads exactly this version).
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from typing import Any

from modelship import constants
from modelship.core import names, sampling, serving_config
from modelship.core.drift import profiles
from modelship.core.drift.profiles import MAX_MESSAGE_BYTES
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship_api.common import ModelRepository
from modelship_api.modeldeployment import ModelDeployment, Runtime
from modelship_api.monitoring import Sampling
from modelship_api.profile import PROFILE_FILE
from modelship_api.trainingrun import LINEAGE_DATA_TIME, LINEAGE_FILE

REPO_VOLUME = "model-repository"
VIEW_VOLUME = "triton-repository"
VIEW_MOUNT = "/triton-repository"
PROBE_PERIOD_S = 5
# preStop sleep of a Triton pod: time for endpoint removal to reach every proxy and gateway.
PRESTOP_SLEEP_S = 5
TERMINATION_GRACE_S = 30
HEADLESS = "None"  # spec.clusterIP of a Service without a virtual IP


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.MODEL_DEPLOYMENT_KIND,
        "name": md.metadata.name,
        "uid": md.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def repository_volume(repo: ModelRepository) -> dict[str, Any]:
    if repo.persistent_volume_claim is not None:
        return {
            "name": REPO_VOLUME,
            "persistentVolumeClaim": {
                "claimName": repo.persistent_volume_claim.claim_name,
                "readOnly": True,
            },
        }
    assert repo.host_path is not None  # the CRD's CEL rule guarantees exactly one
    return {"name": REPO_VOLUME, "hostPath": {"path": repo.host_path.path, "type": "Directory"}}


def repository_root(repo: ModelRepository) -> str:
    sub = (repo.sub_path or "").strip("/")
    return f"{constants.MODEL_REPOSITORY_MOUNT}/{sub}" if sub else constants.MODEL_REPOSITORY_MOUNT


# Drops the top-level fields named by `re` from a config.pbtxt, whether a field is a scalar
# line (`max_batch_size: 8`) or a block over one or several lines (`instance_group [ ... ]`,
# `version_policy { ... }`): a block ends where its brackets and braces balance.
_DROP_FIELDS = (
    '$0 ~ re && !skip {skip=1; depth=0; seen=0; '
    'scalar=($0 ~ /:[[:space:]]*[A-Za-z0-9_.+"-]/)} '
    'skip {o=gsub(/[{]/, "&")+gsub(/\\[/, "&"); c=gsub(/[}]/, "&")+gsub(/\\]/, "&"); '
    'depth+=o-c; if (o) seen=1; if ((scalar && !o) || (seen && depth<=0)) skip=0; next} '
    '{print}'
)


def view_script(root: str, model: str, version: int, runtime: Runtime | None = None,
                sampled: Sampling | None = None) -> str:
    """Shell that links one version into the per-pod repository view with the serving
    config of `runtime` (core.serving_config) and the sampling parameters of `sampled`
    (core.sampling), or says what is wrong (the message becomes the init container's
    termination message, shown in the ModelDeployment's status)."""
    runtime = runtime if runtime is not None else Runtime()
    extra = sampling.parameters(sampled, model) if sampled is not None else ""
    src = shlex.quote(f"{root}/{model}")
    dst = shlex.quote(f"{VIEW_MOUNT}/{model}")
    ver = str(version)
    model_file = serving_config.MODEL_FILES[runtime.backend]
    fields = "|".join(serving_config.owned_fields(runtime))
    lines = [
        "set -eu",
        f"src={src}; dst={dst}; v={ver}",
        'fail() { echo "$1" | tee /dev/termination-log >&2; exit 1; }',
        '[ -d "$src/$v" ] || fail "model repository has no version $v under $src"',
        'cfg="$src/$v/config.pbtxt"; [ -f "$cfg" ] || cfg="$src/config.pbtxt"',
        '[ -f "$cfg" ] || fail "no config.pbtxt in $src/$v/ or $src/"',
        f'[ -e "$src/$v/{model_file}" ] || fail "runtime.backend {runtime.backend} serves '
        f'{model_file}, which version $v has not ($src/$v/): publish it with that backend, '
        'or set runtime.backend to one it was published for"',
        "pub=$(awk '/^[[:space:]]*max_batch_size[[:space:]]*:/ "
        "{sub(/^[^:]*:[[:space:]]*/, \"\"); print $1 + 0; exit}' \"$cfg\")",
        'pub="${pub:-0}"',
    ]
    need = serving_config.batching_required(runtime)
    if need is True:
        lines.append(
            '[ "$pub" -gt 0 ] || fail "runtime.maxBatchSize/dynamicBatching need a version '
            'published with batching (max_batch_size above 0, dims without the batch axis); '
            'version $v has max_batch_size 0: set runtime.maxBatchSize 0 and remove '
            'dynamicBatching, or publish with batching"')
    elif need is False:
        lines.append(
            '[ "$pub" -eq 0 ] || fail "runtime.maxBatchSize 0 needs a version published '
            'without batching (dims with the batch axis); version $v has max_batch_size '
            '$pub: set runtime.maxBatchSize above 0 or leave it out"')
    lines += [
        'mkdir -p "$dst"',
        f"awk -v re={shlex.quote(f'^[[:space:]]*({fields})([[:space:]]|:|[{{]|[[]|$)')} "
        f"{shlex.quote(_DROP_FIELDS)} \"$cfg\" > \"$dst/config.pbtxt\"",
        "printf '%s' " + shlex.quote(serving_config.render(runtime, version) + extra)
        + ' >> "$dst/config.pbtxt"',
        'ln -sfn "$src/$v" "$dst/$v"',
        *_carry_script(model_file),
    ]
    return "\n".join(lines)


def _carry_script(model_file: str) -> list[str]:
    """Shell that carries the version's profile.json to the operator in the init container's
    termination message (core.drift.profiles): whole when the kubelet keeps it, else a note
    of what dates the version (the profile's size and dataTime, lineage.json's dataTime, the
    publish time), so that its model age is known without the profile. Times are read with
    sed and only their characters kept, so the note is always JSON and a few hundred bytes."""
    time_of = (f"sed -n 's/^.*\"{LINEAGE_DATA_TIME}\"[[:space:]]*:[[:space:]]*"
               f"\"\\([0-9A-Za-z:.+-]*\\)\".*$/\\1/p' \"$1\" 2>/dev/null "
               f"| head -n 1 | cut -c 1-{profiles.MAX_TIME_CHARS}")
    return [
        f'p="$src/$v/{PROFILE_FILE}"; l="$src/$v/{LINEAGE_FILE}"; n=0',
        '[ ! -f "$p" ] || n=$(wc -c < "$p")',
        f'if [ -f "$p" ] && [ "$n" -le {MAX_MESSAGE_BYTES} ]; then '
        'cat "$p" > /dev/termination-log; else',
        f"  dt() {{ {time_of}; }}",
        '  note=""',
        f'  [ ! -f "$p" ] || note="\\"{profiles.TOO_LARGE_KEY}\\": $n, '
        f'\\"{profiles.PROFILE_TIME_KEY}\\": \\"$(dt "$p")\\", "',
        f'  [ ! -f "$l" ] || note="$note\\"{profiles.LINEAGE_TIME_KEY}\\": '
        '\\"$(dt "$l")\\", "',
        # The publish is a rename of a complete folder written after training: the older of
        # the folder's and the model file's modification times is later than the data's.
        f'  t=$(stat -L -c %Y "$src/$v" "$src/$v/{model_file}" 2>/dev/null | sort -n '
        '| head -n 1)',
        f'  echo "{{$note\\"{profiles.PUBLISHED_KEY}\\": \\"$t\\"}}" > /dev/termination-log',
        'fi',
    ]


def _http_probe(path: str, failure_threshold: int, period: int = PROBE_PERIOD_S,
                ) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


# Triton's latency summary, for the p99Latency check: Triton 2.51 knows counter_latencies,
# summary_latencies and summary_quantiles (no histogram of request durations, no setting
# for the summary's 60 s sliding window). Quantiles are pinned so p99 exists whatever
# Triton's default list becomes; 0.99:0.001 keeps the rank within 0.989-0.991.
LATENCY_SUMMARY_ARGS = (
    "--metrics-config=summary_latencies=true",
    "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001",
)


def triton_args(md: ModelDeployment) -> list[str]:
    runtime = md.spec.runtime
    args = [
        f"--model-repository={VIEW_MOUNT}",
        "--model-control-mode=explicit",
        f"--load-model={md.spec.model.name}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-port={constants.PORT_HTTP}",
        f"--grpc-port={constants.PORT_GRPC}",
        f"--metrics-port={constants.PORT_METRICS}",
        "--allow-metrics=true",
        *LATENCY_SUMMARY_ARGS,
    ]
    return args + list(runtime.args or [])


def deployment(md: ModelDeployment, version: int, replicas: int,
               revision: int = 0) -> dict[str, Any]:
    """The Deployment that serves `version` of the model with `replicas` Triton pods, as
    pod-template `revision` (core.releases)."""
    spec = md.spec
    model = spec.model.name
    release = Release(version, revision)
    name = names.release_name(md.metadata.name, release)
    labels = {**names.common_labels(md.metadata.name, model),
              **names.version_selector(md.metadata.name, release)}
    startup_budget = parse_duration(spec.runtime.startup_timeout)
    container: dict[str, Any] = {
        "name": "triton",
        "image": spec.runtime.image,
        "command": ["tritonserver"],
        "args": triton_args(md),
        "ports": [
            {"name": "http", "containerPort": constants.PORT_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": constants.PORT_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": constants.PORT_METRICS, "protocol": "TCP"},
        ],
        "startupProbe": _http_probe(
            "/v2/health/live", max(1, math.ceil(startup_budget / PROBE_PERIOD_S))
        ),
        "livenessProbe": _http_probe("/v2/health/live", 3, period=10),
        "readinessProbe": _http_probe(f"/v2/models/{model}/versions/{version}/ready", 2),
        "volumeMounts": [
            {"name": REPO_VOLUME, "mountPath": constants.MODEL_REPOSITORY_MOUNT,
             "readOnly": True},
            {"name": VIEW_VOLUME, "mountPath": VIEW_MOUNT},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # A deleted pod leaves the endpoints at once, but kube-proxy and gateways learn it a
        # moment later: Triton keeps serving (no binary needed in the image) until then.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
    }
    if spec.runtime.resources is not None:
        container["resources"] = spec.runtime.resources.to_api()
    init = {
        "name": "select-version",
        "image": spec.runtime.image,
        "command": ["sh", "-c", view_script(repository_root(spec.repository), model, version,
                                            spec.runtime, spec.monitoring.sampling)],
        "volumeMounts": list(container["volumeMounts"]),
    }
    volumes = [repository_volume(spec.repository), {"name": VIEW_VOLUME, "emptyDir": {}}]
    if spec.monitoring.sampling.enabled:
        # Read-write, the Triton container only: its runner writes the samples there.
        volumes.append(sampling.volume(spec.monitoring.sampling))
        container["volumeMounts"].append({"name": sampling.VOLUME, "mountPath": sampling.MOUNT})
    pod_spec: dict[str, Any] = {
        "initContainers": [init],
        "containers": [container],
        "volumes": volumes,
        # The preStop sleep, then time for Triton to finish in-flight requests on SIGTERM.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
    }
    if spec.runtime.node_selector:
        pod_spec["nodeSelector"] = dict(spec.runtime.node_selector)
    if spec.runtime.tolerations:
        pod_spec["tolerations"] = [t.to_api() for t in spec.runtime.tolerations]
    if spec.runtime.service_account_name:
        pod_spec["serviceAccountName"] = spec.runtime.service_account_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": md.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": names.version_selector(md.metadata.name, release)},
            "progressDeadlineSeconds": max(60, math.ceil(startup_budget) + 60),
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(constants.PORT_METRICS),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def _service(md: ModelDeployment, name: str, selector: dict[str, str],
             extra_labels: dict[str, str], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": md.metadata.namespace,
            "labels": {**names.common_labels(md.metadata.name, md.spec.model.name),
                       **extra_labels},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            **(spec or {}),
            "selector": selector,
            "ports": [
                {"name": "http", "port": constants.PORT_HTTP, "targetPort": "http",
                 "protocol": "TCP"},
                # h2c tells Gateway API implementations to speak cleartext HTTP/2 (gRPC).
                {"name": "grpc", "port": constants.PORT_GRPC, "targetPort": "grpc",
                 "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": constants.PORT_METRICS, "targetPort": "metrics",
                 "protocol": "TCP"},
            ],
        },
    }


def version_service(md: ModelDeployment, version: int, revision: int = 0,
                    current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Service in front of one release's pods: a GRPCRoute backend and a DNS name for
    testers (`<name>-v<N>`). Headless: the gateway routes to the endpoints, not to a virtual
    IP, and the API server allocates ClusterIPs one at a time (a thousand ModelDeployments
    would wait on it twice). The ports are the pods' own, so a client of the name reaches
    the same ports. `current` is the Service as the cluster has it: one that already holds a
    ClusterIP (made before version Services were headless) keeps it, as clusterIP is
    immutable and recreating the Service would take a serving release off the route; the
    release's next Service is headless."""
    release = Release(version, revision)
    selector = names.version_selector(md.metadata.name, release)
    addressed = current is not None and \
        (current.get("spec") or {}).get("clusterIP") not in (None, "", HEADLESS)
    return _service(md, names.release_name(md.metadata.name, release), selector,
                    {constants.LABEL_MODEL_VERSION: release.label},
                    None if addressed else {"clusterIP": HEADLESS})


def template_hash(md: ModelDeployment) -> str:
    """The identity of the pod template the spec describes, whatever version it serves (the
    counterpart of Kubernetes' pod-template-hash): a change of image, args, resources,
    placement, repository or serving config, or of how modelship renders them, changes it
    and makes a new revision (core.releases)."""
    template = deployment(md, 0, 1)["spec"]["template"]
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class TemplateHashes:
    """template_hash per ModelDeployment, rendered once per generation: the pod template
    depends on the spec and the name only, and the API server raises the generation on
    every spec change. A pass runs often (every event on a child, every resync) and the
    rendering was a tenth of the operator's CPU with a thousand ModelDeployments."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[str, int, str]] = {}

    def get(self, md: ModelDeployment) -> str:
        meta = md.metadata
        key, seen = (meta.namespace, meta.name), (meta.uid, meta.generation)
        known = self._known.get(key)
        if known is None or known[:2] != seen or not meta.generation:  # 0: not from the API
            known = (*seen, template_hash(md))
            self._known[key] = known
        return known[2]

    def forget(self, namespace: str, name: str) -> None:
        self._known.pop((namespace, name), None)


def stable_service(md: ModelDeployment, selector: dict[str, str]) -> dict[str, Any]:
    """The one address clients call, whatever version serves them; `selector` comes from the
    traffic decision (core.traffic.stable_selector)."""
    return _service(md, md.metadata.name, selector, {})
