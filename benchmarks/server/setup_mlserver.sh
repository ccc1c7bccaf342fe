#!/usr/bin/env bash
# MLServer + mlserver-sklearn in their own virtualenv (gitignored), for run.py.
# uvloop is pinned: MLServer 1.7.1's inference workers crash at start with uvloop 0.23.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../../.venv/bin/python}"
"$python" -m venv "$here/.venv-mlserver"
"$here/.venv-mlserver/bin/pip" install -q "mlserver==1.7.1" "mlserver-sklearn==1.7.1" \
    "uvloop==0.21.0" "scikit-learn==$("$python" -c 'import sklearn; print(sklearn.__version__)')"
echo "MLServer ready in $here/.venv-mlserver"
