# modelship: `make demo` runs the local loop, `make test` runs every check and test.
.PHONY: setup venv tools prepare demo test lint unit integration crds images

setup:
	./hack/setup.sh

# setup without the Go builds: the virtualenv and the Debian packages.
venv:
	./hack/setup.sh --venv

# The control plane's binaries, built from Go modules (cached in ~/.cache/modelship/bin).
tools: venv
	.venv/bin/python -m modelship_dev.tools

# The binaries and the images, built at once: on a cold machine the Go builds keep both
# cores busy for about 17 minutes while the image builds mostly wait on downloads and disks.
prepare:
	$(MAKE) --no-print-directory -j2 tools images

# The node agent runs pods from the images make images builds (cached: seconds when unchanged).
demo: prepare
	.venv/bin/modelship demo

CHART := charts/modelship

# The chart with every values file under ci/: helm lint --strict, then helm template, then
# promtool check rules on its PrometheusRule (helm and promtool are built by make tools, with
# the control plane).
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

test: prepare
	$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest

unit: setup
	.venv/bin/python -m pytest tests/unit

integration: prepare
	.venv/bin/python -m pytest tests/integration

crds:
	.venv/bin/python -m modelship_api.crdgen crds charts/modelship/crds

# The operator's, the trainer's and the local Triton runtime's images, built with buildah (no
# daemon) and exported to the local image store (docs/images.md); unchanged images are cached.
images: venv
	.venv/bin/python -m modelship_dev.images
