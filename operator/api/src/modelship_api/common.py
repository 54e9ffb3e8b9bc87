"""Types shared by both custom resources.

Every field carries a description: the CRD generator copies them into the OpenAPI schema so
that `kubectl explain` documents the API. Cross-field rules are CEL (`x-kubernetes-validations`)
attached with `cel(...)`, so the API server refuses bad input at admission.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

# Go-style durations restricted to the units an operator cares about ("500ms", "1m30s", "2h").
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
# Kubernetes resource quantities ("500m", "4Gi", 1): an int-or-string, as in a Pod spec.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)],
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
# Names that become part of Kubernetes object names (DNS-1123 label).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]
# Triton model names: a directory in the model repository and a label value.
MODEL_NAME_PATTERN = r"^[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$"
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN, max_length=63)]

GPU_RESOURCE = "nvidia.com/gpu"


def cel(rule: str, message: str, field_path: str | None = None,
        reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def schema_default(model: type[ApiModel]) -> dict[str, Any]:
    """A CRD default for an object field: the model's own defaults, spelled out, so that the
    API server stores them and CEL rules can read them."""
    return {"default": model().to_api()}


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
    )

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.limits) || !('nvidia.com/gpu' in self.limits) || "
                "(quantity(string(self.limits['nvidia.com/gpu'])).isInteger() && "
                "quantity(string(self.limits['nvidia.com/gpu'])).asInteger() > 0)",
                "limits['nvidia.com/gpu'] must be a positive whole number of GPUs",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.requests) || !('nvidia.com/gpu' in self.requests) || "
                "(has(self.limits) && 'nvidia.com/gpu' in self.limits && "
                "quantity(string(self.requests['nvidia.com/gpu']))"
                ".compareTo(quantity(string(self.limits['nvidia.com/gpu']))) == 0)",
                "requests['nvidia.com/gpu'] must equal limits['nvidia.com/gpu'] "
                "(GPUs cannot be overcommitted); set the count in limits",
                reason="FieldValueInvalid",
            ),
        )
    )

    requests: dict[str, Quantity] | None = Field(
        default=None,
        description="Minimum resources the scheduler reserves, e.g. {cpu: '2', memory: 4Gi}.",
    )
    limits: dict[str, Quantity] | None = Field(
        default=None,
        description=(
            "Maximum resources. GPUs are requested here as 'nvidia.com/gpu': a positive "
            "whole number."
        ),
    )

    def gpus(self) -> int:
        value = (self.limits or {}).get(GPU_RESOURCE)
        return int(value) if value is not None and str(value).isdigit() else 0


class Toleration(ApiModel):
    """A Pod toleration, passed through unchanged (e.g. for tainted GPU nodes)."""

    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(default=None, description="Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


class PersistentVolumeClaimRef(ApiModel):
    """A PersistentVolumeClaim in the resource's namespace."""

    claim_name: DnsLabel = Field(description="Name of the PersistentVolumeClaim.")


class HostPathRef(ApiModel):
    """A directory on the node (single-node clusters and local development)."""

    path: Annotated[str, StringConstraints(pattern=r"^/", max_length=4096)] = Field(
        description="Absolute directory path on the node."
    )


class ModelRepository(ApiModel):
    """Where the Triton model repository lives: exactly one of persistentVolumeClaim or hostPath.

    Versions are laid out as `<repository>/<model>/<version>/` with `config.pbtxt` beside
    the version folders, as Triton expects.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.persistentVolumeClaim), has(self.hostPath)]"
                ".filter(x, x).size() == 1",
                "set exactly one of persistentVolumeClaim or hostPath",
                reason="FieldValueInvalid",
            )
        )
    )

    persistent_volume_claim: PersistentVolumeClaimRef | None = Field(
        default=None, description="A PersistentVolumeClaim holding the repository (ReadWriteMany "
        "when training and serving run on different nodes)."
    )
    host_path: HostPathRef | None = Field(
        default=None, description="A node directory holding the repository."
    )
    sub_path: Annotated[str, StringConstraints(pattern=r"^[^/].*$|^$", max_length=1024)] | None = (
        Field(default=None, description="Folder inside the volume that is the repository root.")
    )


class PrometheusEndpoint(ApiModel):
    """A Prometheus to query (analysis checks, monitoring)."""

    address: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=512)] = (
        Field(description="Prometheus base URL, e.g. http://prometheus.monitoring:9090.")
    )
    timeout: Duration = Field(default="2s", description="Per-query timeout.")


class Condition(ApiModel):
    """A Kubernetes-style condition (type, status, reason, message, lastTransitionTime)."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded, InvalidSpec, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class ObjectMeta(ApiModel):
    """The part of metadata the operator reads."""

    name: str = Field(default="", description="Object name.")
    namespace: str = Field(default="", description="Object namespace.")
    uid: str = Field(default="", description="Object UID.")
    generation: int = Field(default=0, description="Spec generation.")
    creation_timestamp: str | None = Field(default=None, description="When it was created.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")
