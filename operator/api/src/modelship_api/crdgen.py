"""Generate the CustomResourceDefinitions in crds/ from the pydantic models.

Pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a structural OpenAPI v3 schema:
no $ref, no `null` types, boolean exclusive bounds, and a description on every field for
`kubectl explain`. `python -m modelship_api.crdgen [--check] DIR` writes or checks the files.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelship_api import names
from modelship_api.modeldeployment import ModelDeployment
from modelship_api.trainingrun import TrainingRun

_DROP = {"title", "$defs"}


@dataclass(frozen=True)
class CrdInfo:
    model: type[BaseModel]
    kind: str
    plural: str
    short_names: list[str]
    printer_columns: list[dict[str, str]]
    root_rules: list[dict[str, str]]


_DNS_1035 = "^[a-z]([-a-z0-9]*[a-z0-9])?$"

CRDS = [
    CrdInfo(
        model=ModelDeployment,
        kind=names.MODEL_DEPLOYMENT_KIND,
        plural=names.MODEL_DEPLOYMENT_PLURAL,
        short_names=["md"],
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Stable", "type": "integer", "jsonPath": ".status.stableVersion"},
            {"name": "Candidate", "type": "integer", "jsonPath": ".status.candidateVersion"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.weights.candidate",
             "description": "Percent of traffic on the candidate"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        root_rules=[
            {
                "rule": f"self.metadata.name.matches('{_DNS_1035}') && "
                "size(self.metadata.name) <= 50",
                "message": "metadata.name must be a DNS-1035 label of at most 50 characters "
                "(lowercase letters, digits, '-', starting with a letter): Services named "
                "<name>-v<version> are derived from it",
                "reason": "FieldValueInvalid",
            }
        ],
    ),
    CrdInfo(
        model=TrainingRun,
        kind=names.TRAINING_RUN_KIND,
        plural=names.TRAINING_RUN_PLURAL,
        short_names=["tr"],
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Version", "type": "integer", "jsonPath": ".status.version"},
            {"name": "Metric", "type": "string", "jsonPath": ".status.keyMetric"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        root_rules=[
            {
                "rule": "size(self.metadata.name) <= 52",
                "message": "metadata.name must be at most 52 characters: the Job and its pods "
                "are named after it",
                "reason": "FieldValueInvalid",
            }
        ],
    ),
]


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the referring field's description wins
    any_of = node.get("anyOf")
    if any_of and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unions are not structural: {any_of}")
        del node["anyOf"]
        node = {**_resolve(branches[0], defs), **node}
        if node.get("default", 0) is None:
            del node["default"]
        return _convert(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {k: _convert(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "anyOf":  # int-or-string keeps its branches, plainly typed
            out[key] = [{"type": b["type"]} for b in value]
        else:
            out[key] = value
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**defs[node["$ref"].rsplit("/", 1)[-1]], **rest}
    return node


def _check_descriptions(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        where = f"{path}.{name}"
        if where == ".metadata":
            continue
        if not prop.get("description"):
            missing.append(where)
        missing += _check_descriptions(prop, where)
        if isinstance(prop.get("items"), dict):
            missing += _check_descriptions(prop["items"], where + "[]")
    return missing


def openapi_schema(info: CrdInfo) -> dict[str, Any]:
    raw = info.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _convert(raw, defs)
    props = schema["properties"]
    # The API server owns metadata's schema: anything beyond `type` is refused.
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": props["apiVersion"]["description"]}
    props["kind"] = {"type": "string", "description": props["kind"]["description"]}
    props["status"].pop("default", None)
    schema["required"] = ["spec"]
    schema["x-kubernetes-validations"] = info.root_rules
    missing = _check_descriptions(schema)
    if missing:
        raise ValueError(f"{info.kind}: fields without a description: {missing}")
    return schema


def crd(info: CrdInfo) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{names.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelship"},
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": info.short_names,
                "categories": ["modelship"],
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": info.printer_columns,
                    "schema": {"openAPIV3Schema": openapi_schema(info)},
                }
            ],
        },
    }


def render(info: CrdInfo) -> str:
    header = "# Generated by `python -m modelship_api.crdgen` from modelship_api. Do not edit.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=100)


def filename(info: CrdInfo) -> str:
    return f"{names.GROUP}_{info.plural}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directories", type=Path, nargs="+",
                        help="e.g. crds charts/modelship/crds")
    parser.add_argument("--check", action="store_true", help="fail when files differ")
    args = parser.parse_args(argv)
    drift = []
    for directory in args.directories:
        for info in CRDS:
            path = directory / filename(info)
            text = render(info)
            if args.check:
                if not path.is_file() or path.read_text() != text:
                    drift.append(str(path))
            else:
                path.write_text(text)
    if drift:
        print("CRDs drifted from modelship_api; run `make crds`:",
              *drift, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
