"""The test traffic generator reads the backends the operator writes, revisions included."""

from __future__ import annotations

import pytest

from modelship.core.releases import Release
from modelship.core.rollout import SetTraffic
from modelship.core.traffic import grpc_route
from modelship_api.modeldeployment import ModelDeployment
from modelship_dev.traffic import backend_version


def test_backend_names_of_every_revision_give_their_model_version() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "md", "namespace": "ns"},
        "spec": {"model": {"name": "m", "version": 3},
                 "repository": {"hostPath": {"path": "/r"}},
                 "traffic": {"provider": "gateway",
                             "gateway": {"parentRefs": [{"name": "gw"}]}}},
    })
    route = grpc_route(md, SetTraffic(3, 3, 20, 0, stable_revision=0, candidate_revision=2))
    backends = [ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
    assert backends == ["md-v3", "md-v3-r2", "md-v3-r2"]  # the last: the preview rule
    assert [backend_version(b, "md") for b in backends] == [3, 3, 3]
    assert Release(3, 2).label == "3-r2"
    assert backend_version("md-v12", "md") == 12
    with pytest.raises(ValueError, match="not a version Service"):
        backend_version("other-v3", "md")
