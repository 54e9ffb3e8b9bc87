# modelship: `make demo` runs the local loop, `make test` runs every check and test.
.PHONY: setup demo test lint unit integration crds

setup:
	./hack/setup.sh

demo: setup
	.venv/bin/modelship demo

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test: setup lint
	.venv/bin/python -m pytest

unit: setup
	.venv/bin/python -m pytest tests/unit

integration: setup
	.venv/bin/python -m pytest tests/integration

crds:
	.venv/bin/python -m modelship_api.crdgen crds charts/modelship/crds
