"""The checked-in CRDs are exactly what the generator makes from the API models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelship_api import crdgen

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crds_match_the_models() -> None:
    dirs = [str(ROOT / "crds"), str(ROOT / "charts" / "modelship" / "crds")]
    assert crdgen.main([*dirs, "--check"]) == 0, (
        "crds/ or the chart's crds/ drifted from modelship_api: run `make crds`")


def test_check_fails_on_drift(tmp_path: Path) -> None:
    crdgen.main([str(tmp_path)])
    path = tmp_path / crdgen.filename(crdgen.CRDS[0])
    path.write_text(path.read_text().replace("Percent of traffic", "Share of traffic"))
    assert crdgen.main([str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("info", crdgen.CRDS, ids=lambda i: i.kind)
def test_schema_is_structural(info: crdgen.CrdInfo) -> None:
    schema = crdgen.openapi_schema(info)
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "anyOf: null" not in text and "title:" not in text

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node or "additionalProperties" in node:
                assert node.get("type") == "object", path
            if "items" in node:
                assert node.get("type") == "array", path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string") is True, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(schema, info.kind)


def test_every_field_has_a_description() -> None:
    info = crdgen.CRDS[0]
    schema = crdgen.openapi_schema(info)
    assert crdgen._check_descriptions(schema) == []
    schema["properties"]["spec"]["properties"]["model"].pop("description")
    assert crdgen._check_descriptions(schema) == [".spec.model"]


def test_printer_columns_and_short_names() -> None:
    md = crdgen.crd(crdgen.CRDS[0])["spec"]
    assert md["names"]["shortNames"] == ["md"]
    assert [c["name"] for c in md["versions"][0]["additionalPrinterColumns"]] == [
        "Phase", "Stable", "Candidate", "Weight", "Age"]
    tr = crdgen.crd(crdgen.CRDS[1])["spec"]
    assert tr["names"]["shortNames"] == ["tr"]
    assert [c["name"] for c in tr["versions"][0]["additionalPrinterColumns"]] == [
        "Phase", "Version", "Metric", "Age"]
    assert md["versions"][0]["subresources"] == {"status": {}}


def test_the_retraining_template_is_validated_as_a_training_run() -> None:
    """spec.retraining.template carries the TrainingRun spec's schema and CEL rules, all but
    its immutability (a template may be edited; each run copies it)."""
    md, tr = (crdgen.openapi_schema(info) for info in crdgen.CRDS)
    template = md["properties"]["spec"]["properties"]["retraining"]["properties"]["template"]
    spec = dict(tr["properties"]["spec"])
    immutable = {"rule": "self == oldSelf", "reason": "FieldValueForbidden",
                 "message": "spec is immutable: a TrainingRun records one run; create a new "
                            "TrainingRun"}
    rules = spec.pop("x-kubernetes-validations")
    assert immutable in rules
    if len(rules) > 1:  # the spec's other rules (e.g. gate.slices'), the template's too
        spec["x-kubernetes-validations"] = [r for r in rules if r != immutable]
    assert {k: v for k, v in template.items() if k != "description"} == \
        {k: v for k, v in spec.items() if k != "description"}
