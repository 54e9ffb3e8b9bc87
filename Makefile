# modelship: `make demo` runs the local loop, `make test` runs every check and test.
.PHONY: setup demo test lint unit integration crds images

setup:
	./hack/setup.sh

# The node agent runs pods from the images make images builds (cached: seconds when unchanged).
demo: setup images
	.venv/bin/modelship demo

CHART := charts/modelship

# The chart with every values file under ci/: helm lint --strict, then helm template, then
# promtool check rules on its PrometheusRule (helm and promtool are built by setup, with the
# control plane).
lint:
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	@helm=$$(.venv/bin/python -m modelship_dev.tools --path helm) && \
	for values in $(CHART)/ci/*-values.yaml; do \
	  echo "helm lint --strict, helm template: $$values"; \
	  "$$helm" lint --strict --quiet $(CHART) -f "$$values" && \
	  "$$helm" template modelship $(CHART) --namespace modelship -f "$$values" >/dev/null \
	  || exit 1; \
	done
	.venv/bin/python -m modelship_dev.alert_rules

test: setup images lint
	.venv/bin/python -m pytest

unit: setup
	.venv/bin/python -m pytest tests/unit

integration: setup images
	.venv/bin/python -m pytest tests/integration

crds:
	.venv/bin/python -m modelship_api.crdgen crds charts/modelship/crds

# The operator's, the trainer's and the local Triton runtime's images, built with buildah (no
# daemon) and exported to the local image store (docs/images.md); unchanged images are cached.
images: setup
	.venv/bin/python -m modelship_dev.images
