"""Checks made by the operator because they depend on derived names."""

from __future__ import annotations

from typing import Any

from modelship.core.validation import model_deployment_errors
from modelship_api.modeldeployment import ModelDeployment


def _md(name: str) -> ModelDeployment:
    body: dict[str, Any] = {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {"model": {"name": "m", "version": 1},
                 "repository": {"hostPath": {"path": "/models"}}}}
    return ModelDeployment.model_validate(body)


def test_a_name_that_leaves_no_room_for_a_revision_suffix_is_refused_up_front() -> None:
    name = "a" * 50
    # A Service name may have 63 characters: 50 + "-v12345" + "-r99" is 61 and fits; with
    # an 8-digit version the revisions' names (-r1 .. -r99) would not.
    assert model_deployment_errors(_md(name), 12345) == []
    (error,) = model_deployment_errors(_md(name), 12345678)
    assert error.field == "spec.model.version"
    assert "-r99" in error.message and "shorten metadata.name" in error.message
