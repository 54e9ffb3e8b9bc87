#!/usr/bin/env bash
# Install everything modelship's tests and demo need, idempotently:
#   - a virtualenv in .venv with the four distributions, editable (pip's cache makes reruns fast)
#   - the local control plane, Prometheus, Envoy Gateway and helm, built from Go modules (cached
#     under ~/.cache/modelship/bin)
#   - buildah and mmdebstrap for `make images`, chromium and chromium-driver for the review
#     page's browser test (Debian packages; installed when run as root)
# `--venv`: all but the Go builds (make runs those beside the image builds).
set -euo pipefail
venv_only=0
[[ ${1:-} == --venv ]] && venv_only=1
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[[ -n "$python" ]] || { echo "modelship needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
command -v go >/dev/null || { echo "modelship builds its control plane with Go >= 1.24: install Go" >&2; exit 1; }

# make images builds daemonless: buildah builds the Containerfiles, mmdebstrap makes the base.
# The review page's test drives Debian's headless Chromium through chromedriver.
missing=()
for tool_package in buildah:buildah mmdebstrap:mmdebstrap chromium:chromium \
                    chromedriver:chromium-driver; do
  command -v "${tool_package%%:*}" >/dev/null || missing+=("${tool_package#*:}")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "==> installing ${missing[*]} (make images, the review page's browser test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: make images and the tests need ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
# The four distributions (README.md, "Layout"), installed editable together: the development
# environment (hack/) depends on the operator (.) and the trainer, both on the api.
projects=(operator/api/pyproject.toml pyproject.toml trainer/pyproject.toml hack/pyproject.toml)
stamp=.venv/.modelship-installed
stale=0
[[ -f $stamp ]] || stale=1
for project in "${projects[@]}"; do
  if [[ $project -nt $stamp ]]; then stale=1; fi
done
if (( stale )); then
  echo "==> installing Python dependencies into .venv (first run downloads PyTorch)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e operator/api -e . -e trainer -e hack
  touch "$stamp"
fi

(( venv_only )) && exit 0
echo "==> building the local control plane from Go modules (cached)"
.venv/bin/python -m modelship_dev.tools
