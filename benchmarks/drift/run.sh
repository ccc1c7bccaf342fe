#!/usr/bin/env bash
# Pilotage drift check vs Evidently, side by side. Creates Evidently's own
# virtualenv (benchmarks/drift/.venv-evidently, gitignored) on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv-evidently"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
  echo "creating $venv (evidently 0.7.23)" >&2
  python3 -m venv "$venv"
  # Evidently 0.7.23 imports a pandas internal that pandas 3 removed.
  "$venv/bin/pip" install --quiet "evidently==0.7.23" "pandas<3"
fi
cd "$root"
exec "$root/.venv/bin/python" "$here/compare_evidently.py" "$@"
