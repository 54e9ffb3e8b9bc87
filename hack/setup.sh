#!/usr/bin/env bash
# Install everything modelship's tests and demo need, idempotently:
#   - a virtualenv in .venv with modelship and its extras (pip's cache makes reruns fast)
#   - the local control plane built from Go modules (cached under ~/.cache/modelship/bin)
set -euo pipefail
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

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=.venv/.modelship-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || operator/api/pyproject.toml -nt $stamp ]]; then
  echo "==> installing Python dependencies into .venv (first run downloads PyTorch)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e operator/api -e '.[dev,train,local]'
  touch "$stamp"
fi

echo "==> building the local control plane from Go modules (cached)"
.venv/bin/python -m modelship.devenv.tools
