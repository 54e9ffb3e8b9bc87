"""Every name modelship writes into the cluster: API group, labels, annotations, finalizers."""

from __future__ import annotations

# The API's group, version, kinds and plurals are defined with the CRD models.
from modelship_api.names import API_VERSION as API_VERSION
from modelship_api.names import GROUP as GROUP
from modelship_api.names import MODEL_DEPLOYMENT_KIND as MODEL_DEPLOYMENT_KIND
from modelship_api.names import MODEL_DEPLOYMENT_PLURAL as MODEL_DEPLOYMENT_PLURAL
from modelship_api.names import TRAINING_RUN_KIND as TRAINING_RUN_KIND
from modelship_api.names import TRAINING_RUN_PLURAL as TRAINING_RUN_PLURAL
from modelship_api.names import VERSION as VERSION

FIELD_MANAGER = "modelship-operator"
FINALIZER = f"{GROUP}/finalizer"
# Kopf keeps its own bookkeeping under this prefix, apart from user annotations.
KOPF_ANNOTATION_PREFIX = f"operator.{GROUP}"

# Labels on every child object.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelship"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_DEPLOYMENT = f"{GROUP}/modeldeployment"
LABEL_MODEL = f"{GROUP}/model"
LABEL_MODEL_VERSION = f"{GROUP}/model-version"
LABEL_TRAINING_RUN = f"{GROUP}/trainingrun"

# Manual rollout controls (`modelship promote|abort|pause|resume|retry`) are written here as
# `<action>@<id>`, never into spec, so a GitOps sync cannot undo them.
ANNOTATION_COMMAND = f"{GROUP}/command"

# The GRPCRoute's preview rule: a request carrying this header with value "true" goes to the
# candidate whenever one exists, at any weight (Flagger's header match, Argo Rollouts'
# previewService reached through the gateway).
PREVIEW_HEADER = "x-modelship-preview"
PREVIEW_HEADER_VALUE = "true"

# Triton's well-known ports, named so Services and PodMonitors can refer to them.
PORT_HTTP = 8000
PORT_GRPC = 8001
PORT_METRICS = 8002

# Where the model repository is mounted inside Triton and trainer pods.
MODEL_REPOSITORY_MOUNT = "/models"
