"""Render the Kubernetes Job that runs a TrainingRun's trainer (pure: dicts out)."""

from __future__ import annotations

import json
from typing import Any

from modelship import constants
from modelship.core.triton_manifests import REPO_VOLUME, repository_root
from modelship_api.training_result import (
    DEFAULT_PROGRESS_MARKER,
    ENV_DATASET_DIR,
    ENV_PRODUCTION_DIR,
    ENV_REPOSITORY,
    ENV_TRAINING_SPEC,
    EXIT_INVALID_SPEC,
    EXIT_REJECTED,
    TERMINATION_MESSAGE_PATH,
)
from modelship_api.trainingrun import DatasetVolume, TrainingRun, TrainingRunSpec

DATA_VOLUME = "dataset"
DATA_MOUNT = "/data"
PRODUCTION_VOLUME = "production"
PRODUCTION_MOUNT = "/production"
DEFAULT_COMMAND = ["modelship-train"]


def job_name(run: str) -> str:
    return f"{run}-train"


def labels(tr: TrainingRun) -> dict[str, str]:
    return {
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_NAME: "trainer",
        constants.LABEL_INSTANCE: tr.metadata.name,
        constants.LABEL_COMPONENT: "training",
        constants.LABEL_TRAINING_RUN: tr.metadata.name,
        constants.LABEL_MODEL: tr.spec.model,
    }


def _volumes(tr: TrainingRun) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    repo = tr.spec.publish.repository
    volume: dict[str, Any] = {"name": REPO_VOLUME}
    if repo.persistent_volume_claim is not None:
        volume["persistentVolumeClaim"] = {"claimName": repo.persistent_volume_claim.claim_name}
    else:
        assert repo.host_path is not None  # the CRD's CEL rule guarantees exactly one
        volume["hostPath"] = {"path": repo.host_path.path, "type": "DirectoryOrCreate"}
    volumes = [volume]
    mounts: list[dict[str, Any]] = [
        {"name": REPO_VOLUME, "mountPath": constants.MODEL_REPOSITORY_MOUNT}]
    # Both data volumes are read-only: training never changes its data.
    for name, mount, data in (
            (DATA_VOLUME, DATA_MOUNT, tr.spec.dataset.volume),
            (PRODUCTION_VOLUME, PRODUCTION_MOUNT,
             tr.spec.dataset.production.volume if tr.spec.dataset.production else None)):
        if data is None:
            continue
        if data.persistent_volume_claim:
            volumes.append({"name": name, "persistentVolumeClaim": {
                "claimName": data.persistent_volume_claim, "readOnly": True}})
        else:
            volumes.append({"name": name, "hostPath": {"path": data.host_path,
                                                       "type": "Directory"}})
        mounts.append({"name": name, "mountPath": mount, "readOnly": True})
    return volumes, mounts


def _mounted(mount: str, volume: DatasetVolume) -> str:
    sub = volume.path.strip("/")
    return f"{mount}/{sub}" if sub else mount


def effective_spec(tr: TrainingRun, production_version: int | None) -> TrainingRunSpec:
    """The spec the trainer receives: the baseline pinned to the version in production."""
    baseline = tr.spec.gate.baseline if tr.spec.gate is not None else None
    if baseline is None or baseline.production_version is not None or production_version is None:
        return tr.spec
    spec = tr.spec.model_copy(deep=True)
    assert spec.gate is not None and spec.gate.baseline is not None
    spec.gate.baseline.production_version = production_version
    return spec


def job(tr: TrainingRun, production_version: int | None = None) -> dict[str, Any]:
    """The Job; `production_version` is the stable version of the baseline's
    ModelDeployment, when it names one."""
    spec = effective_spec(tr, production_version)
    trainer = spec.trainer
    volumes, mounts = _volumes(tr)
    env = [
        {"name": ENV_TRAINING_SPEC, "value": json.dumps(spec.to_api(), sort_keys=True)},
        {"name": ENV_REPOSITORY, "value": repository_root(spec.publish.repository)},
    ]
    if spec.dataset.volume is not None:
        env.append({"name": ENV_DATASET_DIR,
                    "value": _mounted(DATA_MOUNT, spec.dataset.volume)})
    if spec.dataset.production is not None:
        env.append({"name": ENV_PRODUCTION_DIR,
                    "value": _mounted(PRODUCTION_MOUNT, spec.dataset.production.volume)})
    env += [{"name": k, "value": v} for k, v in sorted((trainer.env or {}).items())]
    container: dict[str, Any] = {
        "name": "trainer",
        "image": trainer.image,
        "command": list(trainer.command or DEFAULT_COMMAND),
        "env": env,
        "volumeMounts": mounts,
        # The trainer writes its result (JSON, < 4 KiB) here; the operator reads it back.
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        # Ready means "training is done, evaluating": the trainer touches the marker then.
        "readinessProbe": {"exec": {"command": ["test", "-e", DEFAULT_PROGRESS_MARKER]},
                           "periodSeconds": 5},
    }
    if trainer.resources is not None:
        container["resources"] = trainer.resources.to_api()
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    if trainer.node_selector:
        pod["nodeSelector"] = dict(trainer.node_selector)
    if trainer.tolerations:
        pod["tolerations"] = [t.to_api() for t in trainer.tolerations]
    if trainer.service_account_name:
        pod["serviceAccountName"] = trainer.service_account_name
    template_meta: dict[str, Any] = {"labels": labels(tr)}
    if trainer.pod_annotations:
        template_meta["annotations"] = dict(trainer.pod_annotations)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.job.backoff_limit,
        "activeDeadlineSeconds": spec.job.active_deadline_seconds,
        # A rejected model or an invalid spec fails the same way on every retry.
        "podFailurePolicy": {"rules": [{
            "action": "FailJob",
            "onExitCodes": {"containerName": "trainer", "operator": "In",
                            "values": [EXIT_INVALID_SPEC, EXIT_REJECTED]},
        }]},
        "template": {"metadata": template_meta, "spec": pod},
    }
    if spec.job.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.job.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(tr.metadata.name),
            "namespace": tr.metadata.namespace,
            "labels": labels(tr),
            "ownerReferences": [{
                "apiVersion": constants.API_VERSION,
                "kind": constants.TRAINING_RUN_KIND,
                "name": tr.metadata.name,
                "uid": tr.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": job_spec,
    }
