"""Status writes against the real API server: a reconcile pass decided from a read that
someone else's status write has since overtaken is refused (it never overwrites the newer
status), and the next pass reads again and converges. A TrainingRun pass does that itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from modelship import constants
from modelship.adapters.kube import Kube, StatusConflictError
from modelship.handlers import tr_reconcile
from modelship.handlers.md_reconcile import reconcile
from tests.conftest import Kubectl, wait_for
from tests.integration.test_modeldeployment import ready, sample
from tests.integration.test_trainingrun import training_run

pytestmark = pytest.mark.integration

NAME = "defects-dev"
NEWER = "written by another replica after this pass read the resource"


class OvertakenKube(Kube):
    """The real adapter; right after the pass has read the ModelDeployment, another writer
    (kubectl) changes its status, as a second operator replica would."""

    def __init__(self, client: AsyncClient, kubectl: Kubectl,
                 kind: str = constants.MODEL_DEPLOYMENT_KIND,
                 overtake: tuple[str, ...] = ()) -> None:
        super().__init__(client)
        self.kubectl = kubectl
        self.kind = kind
        self.overtaken = False
        # The kubectl arguments of the other write: by default a newer status.
        self.overtake = overtake or ("--subresource=status", "--type=merge", "-p",
                                     json.dumps({"status": {"message": NEWER}}))

    async def get(self, api_version: str, kind: str, name: str,
                  namespace: str) -> dict[str, Any] | None:
        body = await super().get(api_version, kind, name, namespace)
        if kind == self.kind and not self.overtaken:
            self.overtaken = True
            await asyncio.to_thread(self.kubectl, "patch", kind.lower(), name,
                                    *self.overtake)
        return body


def test_a_status_write_from_a_stale_read_is_refused_and_the_next_pass_converges(
        kubectl: Kubectl) -> None:
    kubectl.apply(sample(version=1))
    config = KubeConfig.from_file(kubectl.cluster.kubeconfig)

    async def passes() -> None:
        client = AsyncClient(config=config, field_manager=constants.FIELD_MANAGER)
        try:
            with pytest.raises(StatusConflictError, match="changed since it was read"):
                await reconcile(OvertakenKube(client, kubectl), kubectl.namespace, NAME)
            md = kubectl.get("md", NAME)
            assert md is not None and md["status"] == {"message": NEWER}, md.get("status")

            kube = Kube(client)

            async def converged() -> bool:
                await reconcile(kube, kubectl.namespace, NAME)
                return ready(kubectl, NAME, 1) is not None

            for _ in range(40):  # kwok reports the Triton pod ready within moments
                if await converged():
                    return
                await asyncio.sleep(0.5)
            raise AssertionError(f"not Ready: {kubectl.get('md', NAME)}")
        finally:
            await client.close()

    asyncio.run(passes())
    md = wait_for("Ready v1", lambda: ready(kubectl, NAME, 1))
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]


def test_a_pass_overtaken_only_by_kopfs_bookkeeping_still_writes_its_status(
        kubectl: Kubectl) -> None:
    """Kopf writes its finalizer and annotations on its own schedule (on a new resource,
    often during the first pass): the decision's inputs are unchanged, so the status the
    pass decided is written rather than thrown away."""
    kubectl.apply(sample(version=1))
    config = KubeConfig.from_file(kubectl.cluster.kubeconfig)
    bookkeeping = json.dumps({"metadata": {
        "annotations": {f"{constants.KOPF_ANNOTATION_PREFIX}/touched": "1"},
        "finalizers": [constants.FINALIZER]}})

    async def one_pass() -> OvertakenKube:
        client = AsyncClient(config=config, field_manager=constants.FIELD_MANAGER)
        try:
            kube = OvertakenKube(client, kubectl, overtake=("--type=merge", "-p", bookkeeping))
            await reconcile(kube, kubectl.namespace, NAME)
            return kube
        finally:
            await client.close()

    kube = asyncio.run(one_pass())
    assert kube.overtaken
    md = kubectl.get("md", NAME)
    assert md is not None and md["status"].get("observedGeneration") == 1, md.get("status")
    assert md["status"]["phase"] == "Pending", md["status"]  # creating version 1
    assert md["metadata"]["finalizers"] == [constants.FINALIZER]


def test_a_training_run_pass_overtaken_by_another_writer_reads_again_and_converges(
        kubectl: Kubectl) -> None:
    kubectl.apply(training_run())
    config = KubeConfig.from_file(kubectl.cluster.kubeconfig)

    async def one_pass() -> OvertakenKube:
        client = AsyncClient(config=config, field_manager=constants.FIELD_MANAGER)
        try:
            kube = OvertakenKube(client, kubectl, constants.TRAINING_RUN_KIND)
            await tr_reconcile.reconcile(kube, kubectl.namespace, "defects-v1")
            return kube
        finally:
            await client.close()

    kube = asyncio.run(one_pass())
    assert kube.overtaken
    run = kubectl.get("trainingrun", "defects-v1")
    assert run is not None
    # Decided again from the newer status: the run has its phase and its Job.
    assert run["status"].get("phase"), run["status"]
    assert kubectl.get("job", "defects-v1-train") is not None
