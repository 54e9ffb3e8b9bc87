"""The API's own names: group, version, kinds and plurals of modelship's custom resources.

The operator's `modelship.constants` takes them from here, so each is defined once.
"""

from __future__ import annotations

GROUP = "modelship.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MODEL_DEPLOYMENT_KIND = "ModelDeployment"
MODEL_DEPLOYMENT_PLURAL = "modeldeployments"
TRAINING_RUN_KIND = "TrainingRun"
TRAINING_RUN_PLURAL = "trainingruns"
