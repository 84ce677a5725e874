#!/usr/bin/env bash
# Create the separate venv that benchmarks/bench_pyspatialml.py runs in.
#
# pyspatialml pins numpy<2, so it cannot share the project venv (.venv, numpy 2). This venv gets pyspatialml,
# scikit-learn pinned to the project venv's version (so the refitted forest is the same forest), psutil (peak RSS of
# the process tree) and pyarrow<22 (to unpickle the notebook's split.pkl, which pandas 3 wrote with pyarrow strings;
# pyarrow 22+ needs numpy 2).
#
#     benchmarks/setup_pyspatialml.sh [VENV]        # default: .venv-pyspatialml in the repository root
#
# Idempotent: an existing venv is reused and pip only installs what is missing or at another version. The venv gets a
# `.gitignore` holding `*` (what `python3 -m venv` writes itself from Python 3.13 on), so git ignores it wherever it
# lies. Environment: PYTHON (default python3) picks the interpreter; SKLEARN_VERSION overrides the pin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-pyspatialml}"
python="${PYTHON:-python3}"

sklearn_version="${SKLEARN_VERSION:-}"
if [[ -z "$sklearn_version" && -x "$root/.venv/bin/python" ]]; then
    sklearn_version="$("$root/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)')"
fi
if [[ -n "$sklearn_version" ]]; then
    sklearn_req="scikit-learn==$sklearn_version"
else
    echo "warning: no project venv at $root/.venv and no SKLEARN_VERSION: scikit-learn is not pinned" >&2
    sklearn_req="scikit-learn"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
[[ -f "$venv/.gitignore" ]] || printf '# created by benchmarks/setup_pyspatialml.sh\n*\n' > "$venv/.gitignore"

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pyspatialml "$sklearn_req" psutil "pyarrow<22"
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md

print(", ".join(f"{p} {md.version(p)}" for p in ("pyspatialml", "scikit-learn", "numpy", "pandas", "rasterio")))
EOF
